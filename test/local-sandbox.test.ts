import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { resourcesDir } from '../src/paths.js';
import { LocalSandboxProvider } from '../src/sandbox/local/provider.js';
import { bash, type Sandbox } from '../src/sandbox/types.js';
import { isAlive } from '../src/util/process-tree.js';
import { makeHomeDir, makeSystemTempDir, removeDir, waitFor } from './helpers/server.js';

// The sandbox layer on its own, with real processes: the contract run_rollout and the E2B backend build on.
for (const isolation of ['auto', 'none'] as const) {
  describe(`local sandbox (OPENCODE_ENV_ISOLATION=${isolation})`, () => {
    let rootDir: string;
    let provider: LocalSandboxProvider;
    let sandbox: Sandbox;

    before(async () => {
      rootDir = makeSystemTempDir('sandbox-api');
      const config = loadConfig({ OPENCODE_ENV_ISOLATION: isolation, OPENCODE_ENV_SANDBOX_DIR: rootDir });
      provider = new LocalSandboxProvider({
        sandbox: config.sandbox,
        pythonExecutable: 'python3',
        resourcesDir,
        logger: createLogger('silent'),
      });
      sandbox = await provider.create({ label: 'api' });
    });
    after(async () => {
      await provider.killAll();
      removeDir(rootDir);
    });

    it('runs a command with cwd, env and stdin, in the workdir by default', async () => {
      const result = await sandbox.run(bash('pwd; echo "$GREETING"; cat; echo err >&2; exit 3'), {
        env: { GREETING: 'hello' },
        stdin: 'from stdin\n',
        timeoutMs: 10_000,
      });
      assert.equal(result.exitCode, 3);
      assert.equal(result.stdout, `${sandbox.workdir}\nhello\nfrom stdin\n`);
      assert.equal(result.stderr, 'err\n');
      assert.equal(result.timedOut, false);
      const inHome = await sandbox.run(['pwd'], { cwd: sandbox.homeDir, timeoutMs: 10_000 });
      assert.equal(inHome.stdout.trim(), sandbox.homeDir);
    });

    it('kills the whole process tree at the deadline', async () => {
      const started = Date.now();
      const result = await sandbox.run(bash('sleep 100 & setsid sleep 101 & echo started; wait'), { timeoutMs: 500 });
      assert.equal(result.timedOut, true);
      assert.ok(Date.now() - started < 5000);
      assert.equal(result.stdout, 'started\n');
      assert.ok(result.exitCode > 128, `killed by a signal (exit ${result.exitCode})`);
      const leftovers = await sandbox.run(bash('pgrep -f "sleep 10[01]" || true'), { timeoutMs: 5000 });
      assert.equal(leftovers.stdout, '');
    });

    it('kills a command when its abort signal fires', async () => {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 300);
      const result = await sandbox.run(['sleep', '60'], { timeoutMs: 60_000, signal: controller.signal });
      assert.equal(result.aborted, true);
      assert.equal(result.timedOut, false);
    });

    it('caps captured output, keeping its start and end', async () => {
      const result = await sandbox.run(bash("head -c 300000 /dev/zero | tr '\\0' a; echo END"), { timeoutMs: 10_000, maxOutputBytes: 1000 });
      assert.ok(result.stdout.startsWith('a'.repeat(500)));
      assert.ok(result.stdout.endsWith('END\n'));
      assert.match(result.stdout, /\[\.\.\. 299004 bytes of output omitted \.\.\.\]/);
    });

    it('streams a long-lived process and ends it when asked', async () => {
      const lines: string[] = [];
      const proc = await sandbox.start(['python3', '-u', '-c', 'import sys\nfor line in sys.stdin:\n    print(line.strip().upper())'], {
        onStdout: (chunk) => lines.push(...chunk.toString().split('\n').filter(Boolean)),
      });
      proc.write('first\n');
      await waitFor(() => lines.includes('FIRST'), 10_000, 'the echo');
      proc.write('second\n');
      await waitFor(() => lines.includes('SECOND'), 10_000, 'the second echo');
      proc.endInput();
      assert.equal((await proc.exited).exitCode, 0);
    });

    it('writes, reads and lists files by sandbox path', async () => {
      await sandbox.writeFile('src/app.py', 'print("hi")\n');
      await sandbox.writeFile(`${sandbox.workdir}/data/bytes.bin`, new Uint8Array([0, 1, 2, 255]));
      const seen = await sandbox.run(bash('cat src/app.py; wc -c < data/bytes.bin; echo made > made.txt'), { timeoutMs: 10_000 });
      assert.equal(seen.stdout, 'print("hi")\n4\n');
      assert.equal((await sandbox.readFile('made.txt')).toString(), 'made\n');
      const listing = await sandbox.listFiles(sandbox.workdir);
      const byPath = Object.fromEntries(listing.map((e) => [e.path, e]));
      assert.equal(byPath['src']?.type, 'dir');
      assert.equal(byPath['src/app.py']?.size, 12);
      assert.equal(byPath['data/bytes.bin']?.type, 'file');
      assert.equal(byPath['made.txt']?.type, 'file');
    });

    it('never follows a symlink planted by sandbox code out to the host', async () => {
      const hostSecretDir = makeHomeDir();
      const hostSecret = path.join(hostSecretDir, 'secret.txt');
      writeFileSync(hostSecret, 'host secret');
      try {
        await sandbox.run(bash(`ln -s ${hostSecret} link.txt; ln -s ${hostSecretDir} linkdir; ln -s /etc escape`), { timeoutMs: 10_000 });
        await assert.rejects(sandbox.readFile('link.txt'));
        await assert.rejects(sandbox.readFile('linkdir/secret.txt'), /not a directory|symlinks/);
        await assert.rejects(sandbox.writeFile('escape/opencode-env-probe', 'x'), /not a directory|symlinks/);
        assert.ok(!existsSync('/etc/opencode-env-probe'));
        const listing = await sandbox.listFiles(sandbox.workdir);
        assert.equal(listing.find((e) => e.path === 'linkdir')?.type, 'symlink');
        assert.ok(!listing.some((e) => e.path.startsWith('linkdir/')), 'listing does not descend into symlinks');
      } finally {
        removeDir(hostSecretDir);
      }
    });

    it('refuses paths outside its home and /tmp', async () => {
      await assert.rejects(sandbox.readFile('/etc/passwd'), /outside the sandbox/);
      await assert.rejects(sandbox.writeFile('../../escape.txt', 'x'), /outside the sandbox/);
    });

    it('kill ends every process and deletes the directory', async () => {
      const victim = await provider.create({ label: 'victim' });
      const proc = await victim.start(bash('setsid sleep 300 & sleep 300'));
      const hostDir = path.join(rootDir, `opencode-env-${victim.id}`);
      assert.ok(existsSync(hostDir));
      await victim.kill();
      await proc.exited;
      assert.ok(!isAlive(proc.pid));
      assert.ok(!existsSync(hostDir));
      assert.equal(victim.killed, true);
      await assert.rejects(victim.run(['true'], { timeoutMs: 1000 }), /has been killed/);
    });
  });
}

describe('local sandbox resource limits', () => {
  let rootDir: string;
  let provider: LocalSandboxProvider;
  let sandbox: Sandbox;

  before(async () => {
    rootDir = makeSystemTempDir('sandbox-limits');
    const config = loadConfig({ OPENCODE_ENV_SANDBOX_DIR: rootDir, OPENCODE_ENV_LIMIT_FILE_MB: '1', OPENCODE_ENV_LIMIT_CPU_S: '1' });
    provider = new LocalSandboxProvider({ sandbox: config.sandbox, pythonExecutable: 'python3', resourcesDir, logger: createLogger('silent') });
    sandbox = await provider.create();
  });
  after(async () => {
    await provider.killAll();
    removeDir(rootDir);
  });

  it('stops a process that writes a file over the size limit', async () => {
    const result = await sandbox.run(bash('head -c 3000000 /dev/zero > big.bin'), { timeoutMs: 10_000 });
    assert.notEqual(result.exitCode, 0);
    const size = (await sandbox.listFiles(sandbox.workdir)).find((e) => e.path === 'big.bin')?.size;
    assert.equal(size, 1024 * 1024);
  });

  it('stops a process that uses more CPU time than allowed', async () => {
    const started = Date.now();
    const result = await sandbox.run(['python3', '-c', 'while True: pass'], { timeoutMs: 20_000 });
    assert.equal(result.timedOut, false, 'the CPU limit, not our deadline, ended it');
    assert.ok(result.exitCode > 128, `killed by a signal (exit ${result.exitCode})`);
    assert.ok(Date.now() - started < 10_000);
  });
});
