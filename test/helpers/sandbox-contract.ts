import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it as test } from 'node:test';
import { bash, type Sandbox, type SandboxProvider } from '../../src/sandbox/types.js';
import { waitFor } from './server.js';

/** A backend under test: how to build its provider, and how to clean up what the test created for it. */
export interface SandboxContractTarget {
  name: string;
  createProvider(): Promise<SandboxProvider>;
  cleanup?(): Promise<void>;
  /** Cases this backend cannot pass yet, by test name, with the reason (reported as skipped). */
  skip?: Record<string, string>;
}

/**
 * The sandbox contract every backend must keep, whatever its isolation: the behaviour run_rollout,
 * execute_python and the episode rely on. Each backend's test file calls this with its provider, as the
 * e2b SDK's tests run one `sandboxTest` fixture against every environment.
 */
export function sandboxContract(target: SandboxContractTarget): void {
  describe(`sandbox contract: ${target.name}`, () => {
    const it = (name: string, fn: () => Promise<void>): void => void test(name, { skip: target.skip?.[name] ?? false }, fn);
    let provider: SandboxProvider;
    let sandbox: Sandbox;

    before(async () => {
      provider = await target.createProvider();
      sandbox = await provider.create({ label: 'contract', env: { CONTRACT_VAR: 'from-create' }, metadata: { test: 'contract' } });
    });
    after(async () => {
      await provider.killAll();
      await target.cleanup?.();
    });

    it('reports its backend and isolation', async () => {
      assert.equal(sandbox.backend, provider.backend);
      assert.equal(sandbox.isolation, await provider.isolation());
    });

    it("runs a command with cwd, env and stdin, in the workdir by default, with the create options' env", async () => {
      const result = await sandbox.run(bash('pwd; echo "$GREETING $CONTRACT_VAR"; cat; echo err >&2; exit 3'), {
        env: { GREETING: 'hello' },
        stdin: 'from stdin\n',
        timeoutMs: 10_000,
      });
      assert.equal(result.exitCode, 3);
      assert.equal(result.stdout, `${sandbox.workdir}\nhello from-create\nfrom stdin\n`);
      assert.equal(result.stderr, 'err\n');
      assert.equal(result.timedOut, false);
      const inHome = await sandbox.run(['pwd'], { cwd: sandbox.homeDir, timeoutMs: 10_000 });
      assert.equal(inHome.stdout.trim(), sandbox.homeDir);
      const overridden = await sandbox.run(bash('echo "$CONTRACT_VAR"'), { env: { CONTRACT_VAR: 'from-command' }, timeoutMs: 10_000 });
      assert.equal(overridden.stdout, 'from-command\n', "a command's own env wins");
    });

    it('kills the whole process tree at the deadline, including what escaped its session', async () => {
      // Durations unique to this run, so the check below finds this test's processes only (without a pid
      // namespace of its own, a sandbox sees every process on the host).
      const seconds = 100_000 + Math.floor(Math.random() * 800_000);
      const result = await sandbox.run(bash(`sleep ${seconds} & setsid sleep ${seconds + 1} & echo started; wait`), { timeoutMs: 500 });
      assert.equal(result.timedOut, true);
      assert.equal(result.aborted, false);
      assert.equal(result.stdout, 'started\n');
      assert.ok(result.exitCode > 128, `killed by a signal (exit ${result.exitCode})`);
      const leftovers = await sandbox.run(bash(`pgrep -f "sleep (${seconds}|${seconds + 1})" || true`), { timeoutMs: 5000 });
      assert.equal(leftovers.stdout, '', 'nothing the command started is still running once run() returned');
    });

    it('kills a command when its abort signal fires', async () => {
      const controller = new AbortController();
      const running = sandbox.run(['sleep', '60'], { timeoutMs: 60_000, signal: controller.signal });
      controller.abort();
      const result = await running;
      assert.equal(result.aborted, true);
      assert.equal(result.timedOut, false);
    });

    it('caps captured output, keeping its start and end', async () => {
      const result = await sandbox.run(bash("head -c 300000 /dev/zero | tr '\\0' a; echo END"), {
        timeoutMs: 10_000,
        maxOutputBytes: 1000,
      });
      assert.ok(result.stdout.startsWith('a'.repeat(500)));
      assert.ok(result.stdout.endsWith('END\n'));
      assert.match(result.stdout, /\[\.\.\. 299004 bytes of output omitted \.\.\.\]/);
    });

    it('streams a long-lived process, writing its stdin asynchronously, and ends it when asked', async () => {
      const lines: string[] = [];
      const python = await sandbox.pythonExecutable();
      const proc = await sandbox.start([python, '-u', '-c', 'import sys\nfor line in sys.stdin:\n    print(line.strip().upper())'], {
        onStdout: (chunk) => lines.push(...chunk.toString().split('\n').filter(Boolean)),
      });
      await proc.write('first\n');
      await waitFor(() => lines.includes('FIRST'), 10_000, 'the echo');
      await proc.write(Buffer.from('second\n'));
      await waitFor(() => lines.includes('SECOND'), 10_000, 'the second echo');
      await proc.endInput();
      assert.equal((await proc.exited).exitCode, 0);
    });

    it('writes, reads and lists files by sandbox path', async () => {
      await sandbox.writeFile('src/app.py', 'print("hi")\n');
      await sandbox.writeFile(`${sandbox.workdir}/data/bytes.bin`, new Uint8Array([0, 1, 2, 255]));
      const seen = await sandbox.run(bash('cat src/app.py; wc -c < data/bytes.bin; echo made > made.txt'), { timeoutMs: 10_000 });
      assert.equal(seen.stdout, 'print("hi")\n4\n');
      assert.equal((await sandbox.readFile('made.txt')).toString(), 'made\n');
      assert.deepEqual([...(await sandbox.readFile('data/bytes.bin'))], [0, 1, 2, 255]);
      const byPath = Object.fromEntries((await sandbox.listFiles(sandbox.workdir)).map((e) => [e.path, e]));
      assert.equal(byPath['src']?.type, 'dir');
      assert.equal(byPath['src/app.py']?.size, 12);
      assert.equal(byPath['data/bytes.bin']?.type, 'file');
      assert.equal(byPath['made.txt']?.type, 'file');
      await assert.rejects(sandbox.readFile('does-not-exist.txt'), (error: NodeJS.ErrnoException) => {
        assert.equal(error.code, 'ENOENT', 'a missing file says so the same way on every backend (the verifier relies on it)');
        return true;
      });
    });

    it('writes and reads many files at once, making parents, never following a link, leaving out what is not a file', async () => {
      const longName = `deep/${'d'.repeat(120)}/${'n'.repeat(120)}.txt`;
      await sandbox.writeFiles([
        { path: 'batch/a.txt', content: 'alpha\n' },
        { path: `${sandbox.workdir}/batch/nested/b.bin`, content: new Uint8Array([0, 255, 10]) },
        { path: 'batch/empty', content: '' },
        { path: `batch/${longName}`, content: 'long\n' },
        { path: 'batch/ünï.txt', content: 'utf-8 name\n' },
      ]);
      const seen = await sandbox.run(bash('cat batch/a.txt; wc -c < batch/nested/b.bin; ls batch'), { timeoutMs: 10_000 });
      assert.equal(seen.stdout, 'alpha\n3\na.txt\ndeep\nempty\nnested\nünï.txt\n');
      await sandbox.run(bash('ln -s /etc/passwd batch/link; mkdir -p batch/dir'), { timeoutMs: 10_000 });
      const asked = ['batch/a.txt', `${sandbox.workdir}/batch/nested/b.bin`, 'batch/empty', `batch/${longName}`, 'batch/ünï.txt'];
      const read = await sandbox.readFiles([...asked, 'batch/link', 'batch/dir', 'batch/missing']);
      assert.deepEqual([...read.keys()].sort(), [...asked].sort(), 'links, directories and missing paths are left out');
      assert.equal(read.get('batch/a.txt')?.toString(), 'alpha\n');
      assert.deepEqual([...(read.get(`${sandbox.workdir}/batch/nested/b.bin`) ?? [])], [0, 255, 10]);
      assert.equal(read.get('batch/empty')?.length, 0);
      assert.equal(read.get(`batch/${longName}`)?.toString(), 'long\n');
      assert.equal(read.get('batch/ünï.txt')?.toString(), 'utf-8 name\n');
      assert.equal((await sandbox.readFiles([])).size, 0);
    });

    it('finds node and opencode, installing nothing where the template has them', async () => {
      for (const binary of ['node', 'opencode'] as const) {
        const found = await sandbox.ensureBinary(binary);
        assert.equal(found.installed, false, `${binary} is there already`);
        assert.equal(found.path, await sandbox.binaryPath(binary));
        const version = await sandbox.run([found.path, '--version'], { timeoutMs: 60_000 });
        assert.equal(version.exitCode, 0, `${binary} --version: ${version.stderr}`);
      }
    });

    it('delivers HTTP requests made inside the sandbox to the host through its LLM channel', async () => {
      const seen: string[] = [];
      const host = http.createServer((req, res) => {
        seen.push(`${req.method} ${req.url}`);
        res.end(JSON.stringify({ answered: 'by the host' }));
      });
      const channel = await sandbox.openLlmChannel((connection) => host.emit('connection', connection));
      try {
        const node = await sandbox.binaryPath('node');
        const script =
          'const r = await fetch(process.argv[1] + "/v1/models?x=1"); console.log(r.status, await r.text(), process.env.LLM_URL === process.argv[1]);';
        const argv = await channel.command([node, '--input-type=module', '-e', script, channel.url]);
        const result = await sandbox.run(argv, { env: { LLM_URL: channel.url }, timeoutMs: 30_000 });
        assert.equal(result.stderr, '');
        assert.equal(result.stdout, '200 {"answered":"by the host"} true\n', 'the URL is valid in both the arguments and the environment');
        assert.deepEqual(seen, ['GET /v1/models?x=1']);
      } finally {
        await channel.close();
        host.close();
      }
    });

    it('runs verifier commands only after prepareVerifier, with nothing the agent planted', async () => {
      const box = await provider.create({ label: 'verifier', env: { CONTRACT_VAR: 'from-create' } });
      try {
        await assert.rejects(box.run(['true'], { timeoutMs: 10_000, as: 'verifier' }), /prepareVerifier/);
        const python = await box.pythonExecutable();
        const reward = `${box.rewardDir}/reward.txt`;
        // The reproduced attack: a usercustomize.py that forges the reward when the verifier's Python starts, a
        // reward of the agent's own, and a file in the agent's /tmp.
        const plant = await box.run(
          bash(
            `site=$("${python}" -m site --user-site) && mkdir -p "$site" && ` +
              `echo 'open("${reward}", "w").write("1.0")' > "$site/usercustomize.py" && ` +
              `mkdir -p "${box.rewardDir}" && echo 1.0 > "${reward}" && echo agent > "$TMPDIR/agent-file"`,
          ),
          { timeoutMs: 30_000 },
        );
        assert.equal(plant.exitCode, 0, plant.stderr);
        await box.prepareVerifier();
        await assert.rejects(box.readFile(reward), "the agent's own reward is gone");
        const seen = await box.run(
          bash(
            `"${python}" -c 'import sys; print(sys.flags.no_user_site)'; test -e "${reward}" && echo forged; ` +
              'test -e "$TMPDIR/agent-file" && echo sees-agent-tmp; echo "$USER $PYTHONNOUSERSITE $CONTRACT_VAR $GREETING"; ' +
              `echo "$HOME" "$TMPDIR"; pwd; echo 0.25 > "${reward}"`,
          ),
          { env: { GREETING: 'hello' }, timeoutMs: 30_000, as: 'verifier' },
        );
        assert.equal(seen.exitCode, 0, seen.stderr);
        const [noUserSite, who, dirs, cwd, ...rest] = seen.stdout.trim().split('\n');
        assert.deepEqual(rest, [], 'the planted usercustomize did not run and the agent tmp is not visible');
        assert.equal(noUserSite, '1', 'Python ignores user site-packages');
        assert.equal(who, 'verifier 1 from-create hello', "the create options' and the command's env, and PYTHONNOUSERSITE");
        const [home, tmp] = dirs!.split(' ');
        assert.notEqual(home, box.homeDir, 'the verifier has a HOME of its own');
        assert.ok(home && tmp && !home.startsWith(`${box.homeDir}/`), `the verifier's HOME (${home}) is not in the agent's`);
        assert.equal(cwd, box.workdir, 'verifier commands run in the workdir');
        assert.equal((await box.readFile(reward)).toString(), '0.25\n', 'the host reads what the verifier wrote');
        await box.run(bash('echo 0.5 > "$HOME/logs/verifier/reward.txt"'), { timeoutMs: 10_000, as: 'verifier' });
        assert.equal((await box.readFile(reward)).toString(), '0.5\n', '$HOME/logs/verifier is the reward dir for verifiers too');
      } finally {
        await box.kill();
      }
    });

    // What an agent did to its home before the verifier ran (each reproduced a null reward once).
    const attacks: Record<string, string> = {
      'chmod 555 ~/logs/verifier': 'mkdir -p ~/logs/verifier && chmod 555 ~/logs/verifier',
      '~/logs a symlink': 'mkdir -p "$TMPDIR/fake/verifier" && ln -s "$TMPDIR/fake" ~/logs',
      '~/logs a file': 'echo x > ~/logs',
      '~/logs unwritable':
        'mkdir -p ~/logs/verifier/sub && touch ~/logs/verifier/sub/f && chmod 000 ~/logs/verifier/sub ~/logs/verifier && chmod 500 ~/logs',
      'chmod 000 ~': 'chmod 000 ~',
      'the workdir a symlink': 'mv ~/workdir ~/moved && ln -s /etc ~/workdir',
    };
    for (const [attack, commandLine] of Object.entries(attacks)) {
      it(`prepareVerifier gives the verifier a working reward directory after: ${attack}`, async () => {
        const box = await provider.create({ label: 'attack' });
        try {
          const done = await box.run(bash(commandLine), { timeoutMs: 10_000 });
          assert.equal(done.exitCode, 0, done.stderr);
          await box.prepareVerifier();
          const verify = await box.run(bash(`pwd && echo 0 > "${box.rewardDir}/reward.txt"`), { timeoutMs: 10_000, as: 'verifier' });
          assert.equal(verify.exitCode, 0, verify.stderr);
          assert.equal(verify.stdout, `${box.workdir}\n`);
          assert.equal((await box.readFile(`${box.rewardDir}/reward.txt`)).toString(), '0\n');
          const script = `${box.rewardDir}/test.sh`;
          await box.writeFile(script, 'echo from-test-script');
          assert.equal((await box.run(['bash', script], { timeoutMs: 10_000, as: 'verifier' })).stdout, 'from-test-script\n');
        } finally {
          await box.kill();
        }
      });
    }

    it("gives the verifier Harbor's paths: /tests written from the host after prepareVerifier, /logs/verifier as the reward dir", async () => {
      const box = await provider.create({ label: 'harbor' });
      try {
        if (box.verifierFilesDir === null) {
          assert.equal(box.isolation, 'none', 'only plain processes, which see the host root, go without Harbor paths');
          return;
        }
        const tests = box.verifierFilesDir;
        const plant = await box.run(bash(`mkdir -p ${tests} 2>/dev/null; echo forged > ${tests}/test.sh`), { timeoutMs: 10_000 });
        assert.notEqual(plant.exitCode, 0, `the agent cannot write ${tests}`);
        await box.prepareVerifier();
        await box.writeFiles([
          { path: `${tests}/test.sh`, content: `cat ${tests}/sub/data.txt; echo 0.75 > /logs/verifier/reward.txt` },
          { path: `${tests}/sub/data.txt`, content: 'from the host\n' },
        ]);
        const verify = await box.run(['bash', `${tests}/test.sh`], { timeoutMs: 10_000, as: 'verifier' });
        assert.equal(verify.exitCode, 0, verify.stderr);
        assert.equal(verify.stdout, 'from the host\n', 'the verifier reads what the host wrote under /tests');
        assert.equal((await box.readFile(`${box.rewardDir}/reward.txt`)).toString(), '0.75\n', '/logs/verifier is the reward dir');
      } finally {
        await box.kill();
      }
    });

    it('prepareVerifier ends every process the agent left running', async () => {
      const box = await provider.create({ label: 'stragglers' });
      try {
        const proc = await box.start(bash('setsid sleep 300 & sleep 300'));
        await box.prepareVerifier();
        await proc.exited;
        const ok = await box.run(['true'], { timeoutMs: 10_000, as: 'verifier' });
        assert.equal(ok.exitCode, 0);
      } finally {
        await box.kill();
      }
    });

    it('kills a sandbox when its lifetime ends', async () => {
      const shortLived = await provider.create({ label: 'lifetime', lifetimeMs: 1000 });
      const sleeper = await shortLived.start(['sleep', '300']);
      await sleeper.exited;
      await waitFor(() => shortLived.killed, 10_000, 'the sandbox to be killed');
      await assert.rejects(shortLived.run(['true'], { timeoutMs: 1000 }), /has been killed/);
    });

    it('kill ends every process and channel, and the sandbox refuses further work', async () => {
      const victim = await provider.create({ label: 'victim' });
      const proc = await victim.start(bash('setsid sleep 300 & sleep 300'));
      const channel = await victim.openLlmChannel((connection) => connection.destroy());
      await victim.kill();
      await proc.exited;
      await channel.close(); // already closed by kill: safe to call again
      assert.equal(victim.killed, true);
      await assert.rejects(victim.run(['true'], { timeoutMs: 1000 }), /has been killed/);
      await victim.kill();
    });
  });
}
