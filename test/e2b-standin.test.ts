import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  AuthenticationError,
  CommandExitError,
  E2B,
  FileNotFoundError,
  RateLimitError,
  Sandbox,
  SandboxNotFoundError,
  TimeoutError,
} from 'e2b';
import { startE2bStandIn, type E2bStandIn } from './helpers/e2b-standin/index.js';

/** Host pids whose command line contains `marker` (the stand-in's processes are host processes under bwrap). */
function hostProcessesWith(marker: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(marker)) found.push(Number(entry));
    } catch {
      // Gone in between.
    }
  }
  return found;
}

/** State, parent and command line of each pid, for a failure message: what is still there, and in which state. */
function describeProcesses(pids: number[]): string {
  return pids
    .map((pid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        const wchan = readFileSync(`/proc/${pid}/wchan`, 'utf8');
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').slice(0, 300);
        return `pid ${pid} state ${state} ppid ${ppid} wchan ${wchan}: ${cmdline}`;
      } catch {
        return `pid ${pid} gone`;
      }
    })
    .join('; ');
}

async function eventually(check: () => boolean, what: string, timeoutMs = 20_000, explain?: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}${explain ? ` (${explain()})` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('E2B stand-in, driven by the real e2b SDK', () => {
  let standIn: E2bStandIn;
  let e2b: E2B;
  let sandbox: Sandbox;

  before(async () => {
    standIn = await startE2bStandIn();
    e2b = new E2B({ apiKey: standIn.apiKey, apiUrl: standIn.apiUrl, sandboxUrl: standIn.sandboxUrl });
    sandbox = await e2b.Sandbox.create('opencode-test', {
      metadata: { suite: 'standin', role: 'main' },
      envs: { SANDBOX_WIDE: 'from-create' },
      timeoutMs: 120_000,
    });
  });
  after(async () => {
    await standIn?.close();
  });

  it('creates with the template, metadata, envs and lifetime the SDK sent', () => {
    const create = standIn.requests.find((r) => r.server === 'api' && r.method === 'POST' && r.path === '/v2/sandboxes');
    assert.ok(create, 'the SDK called POST /v2/sandboxes');
    assert.equal(create.headers['x-api-key'], standIn.apiKey);
    const info = standIn.sandboxes().find((s) => s.sandboxId === sandbox.sandboxId);
    assert.ok(info, 'the stand-in knows the sandbox');
    assert.equal(info.templateId, 'opencode-test');
    assert.deepEqual(info.metadata, { suite: 'standin', role: 'main' });
    assert.equal(info.timeoutS, 120);
    const envd = standIn.requests.filter((r) => r.server === 'envd');
    assert.ok(
      envd.length === 0 || envd.every((r) => r.headers['e2b-sandbox-id'] && r.headers['x-access-token']),
      'envd calls carry id and token',
    );
  });

  it('runs foreground commands with bash -l, home as cwd, envs, stdout, stderr and exit codes', async () => {
    const seen: string[] = [];
    const result = await sandbox.commands.run('echo "$SANDBOX_WIDE $PER_COMMAND $(pwd) $(whoami)"; echo oops >&2', {
      envs: { PER_COMMAND: 'per-command' },
      onStdout: (data) => void seen.push(data),
      timeoutMs: 20_000,
    });
    assert.equal(result.exitCode, 0);
    assert.match(result.stdout, /^from-create per-command \/home\/user \S+\n$/);
    assert.equal(result.stderr, 'oops\n');
    assert.equal(seen.join(''), result.stdout, 'onStdout saw the same output');
    const start = standIn.requests.find((r) => r.path === '/process.Process/Start');
    assert.deepEqual((start?.body as { process: { args: string[] } }).process.args.slice(0, 2), ['-l', '-c']);

    const inTmp = await sandbox.commands.run('pwd', { cwd: '/tmp', timeoutMs: 20_000 });
    assert.equal(inTmp.stdout, '/tmp\n');

    await assert.rejects(
      sandbox.commands.run('echo partial; exit 3', { timeoutMs: 20_000 }),
      (error: unknown) => error instanceof CommandExitError && error.exitCode === 3 && error.stdout === 'partial\n',
    );
  });

  it('runs background commands with stdin, wait and kill', async () => {
    const cat = await sandbox.commands.run('cat', { background: true, stdin: true, timeoutMs: 20_000 });
    await sandbox.commands.sendStdin(cat.pid, 'hello ');
    await sandbox.commands.sendStdin(cat.pid, 'stdin\n');
    await sandbox.commands.closeStdin(cat.pid);
    const done = await cat.wait();
    assert.equal(done.stdout, 'hello stdin\n');
    assert.equal(done.exitCode, 0);

    const sleeper = await sandbox.commands.run('sleep 300 # bg-kill-marker', { background: true, timeoutMs: 0 });
    const listed = await sandbox.commands.list();
    assert.ok(
      listed.some((p) => p.pid === sleeper.pid),
      'commands.list shows the background process',
    );
    assert.equal(await sleeper.kill(), true);
    await assert.rejects(sleeper.wait(), (error: unknown) => error instanceof CommandExitError && error.exitCode !== 0);
    await eventually(
      () => hostProcessesWith('bg-kill-marker').length === 0,
      'the killed process is gone from the host',
      20_000,
      () => describeProcesses(hostProcessesWith('bg-kill-marker')),
    );
  });

  it('honours a command deadline with TimeoutError', async () => {
    const startedAt = Date.now();
    await assert.rejects(sandbox.commands.run('sleep 5', { timeoutMs: 500 }), (error: unknown) => error instanceof TimeoutError);
    assert.ok(Date.now() - startedAt < 4000, 'the deadline cut the call short');
  });

  it('writes, reads, lists, makes and removes files', async () => {
    const info = await sandbox.files.write('notes/a.txt', 'alpha');
    assert.equal(info.path, '/home/user/notes/a.txt');
    const many = await sandbox.files.write([
      { path: '/home/user/notes/b.bin', data: new Uint8Array([0, 1, 2, 255]).buffer },
      { path: '/tmp/c.txt', data: 'gamma' },
    ]);
    assert.equal(many.length, 2);
    assert.equal(await sandbox.files.read('/home/user/notes/a.txt'), 'alpha');
    assert.deepEqual([...(await sandbox.files.read('notes/b.bin', { format: 'bytes' }))], [0, 1, 2, 255]);
    assert.equal(await sandbox.files.read('/tmp/c.txt'), 'gamma');
    await sandbox.files.write('/tmp/d.txt', 'delta', { gzip: true });
    assert.equal(await sandbox.files.read('/tmp/d.txt'), 'delta', 'a gzip octet-stream upload');
    const owner = await sandbox.commands.run('cat /home/user/notes/a.txt', { timeoutMs: 20_000 });
    assert.equal(owner.stdout, 'alpha', 'commands see what files.write wrote');
    await assert.rejects(sandbox.files.read('/home/user/missing.txt'), (error: unknown) => error instanceof FileNotFoundError);

    assert.equal(await sandbox.files.makeDir('/home/user/notes/sub'), true);
    assert.equal(await sandbox.files.makeDir('/home/user/notes/sub'), false, 'makeDir of an existing directory');
    const entries = await sandbox.files.list('/home/user/notes');
    assert.deepEqual(entries.map((e) => `${e.name}:${e.type}`).sort(), ['a.txt:file', 'b.bin:file', 'sub:dir']);
    assert.equal(entries.find((e) => e.name === 'b.bin')?.size, 4);
    await sandbox.files.remove('/home/user/notes/a.txt');
    assert.equal(await sandbox.files.exists('/home/user/notes/a.txt'), false);
  });

  it('runs commands and file operations as the user they name: `user` by default, or root', async () => {
    const run = (cmd: string, user?: string) =>
      sandbox.commands.run(cmd, { timeoutMs: 20_000, ...(user ? { user } : {}) }).catch((error: unknown) => error as CommandExitError);
    const byDefault = await run('echo "$(whoami) $HOME $(pwd)"');
    assert.equal(byDefault.stdout, 'user /home/user /home/user\n');
    const start = standIn.requests.filter((r) => r.path === '/process.Process/Start').at(-1);
    assert.equal(start?.headers.authorization, undefined, 'the SDK names no user when none is given (envd >= 0.4)');
    const asRoot = await run('echo "$(whoami) $(id -u) $HOME $(pwd)"', 'root');
    assert.equal(asRoot.stdout, 'root 0 /root /root\n');
    assert.equal(standIn.requests.filter((r) => r.path === '/process.Process/Start').at(-1)?.headers.authorization, 'Basic cm9vdDo=');

    // Root writes /opt and /root, and what it writes there `user` can read but not change.
    await sandbox.files.write('/opt/app/tool.sh', 'echo tool', { user: 'root' });
    assert.equal(standIn.requests.filter((r) => r.path === '/files').at(-1)?.query.username, 'root');
    assert.equal((await sandbox.files.getInfo('/opt/app/tool.sh')).owner, 'root');
    assert.equal((await run('bash /opt/app/tool.sh')).stdout, 'tool\n');
    assert.equal((await run('echo x > /opt/app/tool.sh')).exitCode, 1, '`user` cannot change root files');
    await assert.rejects(sandbox.files.write('/opt/app/mine.txt', 'x'), '`user` cannot write under /opt through files either');
    assert.equal((await run('mkdir -p /root/.cache && echo r > /root/.cache/r && cat /root/.cache/r', 'root')).stdout, 'r\n');
    assert.notEqual((await run('ls /root')).exitCode, 0, '/root is closed to `user`');

    // Root reads, writes and chowns `user`'s files; `user` cannot write in a root-owned directory of its home.
    await sandbox.files.write('/home/user/mine.txt', 'mine');
    assert.equal(await sandbox.files.read('/home/user/mine.txt', { user: 'root' }), 'mine');
    const chowned = await run(
      'mkdir -m 755 /home/user/rootdir && echo s > /home/user/rootdir/s && chown user: /home/user/mine.txt && stat -c %U /home/user/rootdir /home/user/mine.txt',
      'root',
    );
    assert.equal(chowned.stdout, 'root\nuser\n', `root made and chowned (${chowned.stderr})`);
    assert.equal((await run('echo y > /home/user/rootdir/s')).exitCode, 1, '`user` cannot write root files in its own home');
    await run('rm -rf /home/user/rootdir', 'root');

    await assert.rejects(sandbox.commands.run('true', { user: 'nobody-here', timeoutMs: 20_000 }), 'an unknown user is refused');
    assert.equal(standIn.requests.filter((r) => r.path === '/process.Process/Start').at(-1)?.status, 400);
  });

  it('lets root signal `user`s processes (pkill -u user), and never the other way round', async () => {
    const userSleeper = await sandbox.commands.run('sleep 300 # user-sleeper-marker', { background: true, timeoutMs: 0 });
    const rootSleeper = await sandbox.commands.run('sleep 300 # root-sleeper-marker', { background: true, timeoutMs: 0, user: 'root' });
    await eventually(
      () => hostProcessesWith('user-sleeper-marker').length > 0 && hostProcessesWith('root-sleeper-marker').length > 0,
      'both sleep',
    );
    const fromUser = await sandbox.commands
      .run("pkill -KILL -f 'root-sleeper-marke[r]'; pkill -KILL -u root; echo tried", { timeoutMs: 20_000 })
      .catch((error: unknown) => error as CommandExitError);
    assert.equal(fromUser.stdout, 'tried\n');
    assert.ok(hostProcessesWith('root-sleeper-marker').length > 0, '`user` could not signal root`s process');
    await sandbox.commands.run('pkill -KILL -u user', { timeoutMs: 20_000, user: 'root' });
    await eventually(() => hostProcessesWith('user-sleeper-marker').length === 0, 'root ended every process of `user`');
    await assert.rejects(userSleeper.wait(), (error: unknown) => error instanceof CommandExitError);
    assert.equal(await rootSleeper.kill(), true);
    await eventually(() => hostProcessesWith('root-sleeper-marker').length === 0, 'the root sleeper is gone');
  });

  it('lists sandboxes filtered by metadata', async () => {
    const other = await e2b.Sandbox.create({ metadata: { suite: 'standin', role: 'other' }, timeoutMs: 60_000 });
    try {
      const found = await e2b.Sandbox.list({ query: { metadata: { suite: 'standin', role: 'main' } } }).nextItems();
      assert.deepEqual(
        found.map((s) => s.sandboxId),
        [sandbox.sandboxId],
      );
      const both = await e2b.Sandbox.list({ query: { metadata: { suite: 'standin' } } }).nextItems();
      assert.equal(both.length, 2);
    } finally {
      await other.kill();
    }
  });

  it('cuts the sandbox off the network: nothing reaches a listener on the host 127.0.0.1', async () => {
    let connections = 0;
    const listener: Server = createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    try {
      const port = (listener.address() as AddressInfo).port;
      const result = await sandbox.commands
        .run(`timeout 3 bash -c 'echo hi > /dev/tcp/127.0.0.1/${port}' && echo reached || echo refused`, { timeoutMs: 20_000 })
        .catch((error: unknown) => error as CommandExitError);
      assert.equal(result.stdout.trim(), 'refused');
      assert.equal(connections, 0);
    } finally {
      listener.close();
    }
  });

  it('kills a sandbox: its processes are gone and envd answers as for a dead sandbox', async () => {
    const doomed = await e2b.Sandbox.create({ timeoutMs: 60_000 });
    await doomed.commands.run('sleep 300 # sandbox-kill-marker', { background: true, timeoutMs: 0 });
    await eventually(() => hostProcessesWith('sandbox-kill-marker').length > 0, 'the sleeper runs');
    assert.equal(await doomed.kill(), true);
    await eventually(() => hostProcessesWith('sandbox-kill-marker').length === 0, 'the sleeper is gone');
    assert.equal(await doomed.isRunning(), false);
    // A 502 on the first event of a command is what the SDK calls SandboxNotFoundError.
    await assert.rejects(doomed.commands.run('true', { timeoutMs: 5000 }), (error: unknown) => error instanceof SandboxNotFoundError);
    assert.equal(await e2b.Sandbox.kill(doomed.sandboxId), false, 'a second kill finds nothing');
  });

  it('ends a sandbox when its lifetime runs out, and setTimeout extends it', async () => {
    const shortLived = await e2b.Sandbox.create({ timeoutMs: 1000 });
    const extended = await e2b.Sandbox.create({ timeoutMs: 1000 });
    await extended.setTimeout(30_000);
    await eventually(() => standIn.sandboxes().find((s) => s.sandboxId === shortLived.sandboxId)?.endedBy === 'timeout', 'it expires');
    assert.equal(await shortLived.isRunning(), false);
    assert.equal(await extended.isRunning(), true);
    await extended.kill();
  });

  it('drops a stream mid-way and kills sandboxes from outside on request', async () => {
    const victim = await e2b.Sandbox.create({ timeoutMs: 60_000 });
    standIn.dropStreams({ afterEvents: 2 });
    await assert.rejects(victim.commands.run('echo one; sleep 1; echo two', { timeoutMs: 10_000 }), 'a dropped stream fails the call');
    await standIn.killSandbox(victim.sandboxId);
    await assert.rejects(victim.files.read('/home/user/x'), (error: unknown) => error instanceof TimeoutError);
  });

  it('answers a wrong API key with 401 and rate limits with 429 after the SDK retries', async () => {
    const wrongKey = new E2B({ apiKey: 'e2b_wrong', apiUrl: standIn.apiUrl, sandboxUrl: standIn.sandboxUrl });
    await assert.rejects(wrongKey.Sandbox.create(), (error: unknown) => error instanceof AuthenticationError);

    const before = standIn.requests.filter((r) => r.path === '/v2/sandboxes' && r.method === 'POST').length;
    standIn.failCreates(...Array.from({ length: 4 }, () => ({ status: 429, retryAfterS: 0 })));
    await assert.rejects(e2b.Sandbox.create(), (error: unknown) => error instanceof RateLimitError);
    const attempts = standIn.requests.filter((r) => r.path === '/v2/sandboxes' && r.method === 'POST').length - before;
    assert.equal(attempts, 4, 'one call and the three retries of the SDK');
  });
});

describe('E2B stand-in network: one loopback per sandbox, as in one VM', () => {
  const rootDir = mkdtempSync(path.join(os.tmpdir(), 'e2b-standin-netns-'));
  const netnsList = () => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  const mountsUnderRoot = () =>
    readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .filter((line) => line.includes(rootDir));
  const namespacesBefore = netnsList();
  let standIn: E2bStandIn | null = null;
  let host: Server | null = null;

  after(async () => {
    await standIn?.close();
    host?.close();
    rmSync(rootDir, { recursive: true, force: true });
  });

  it('lets commands of one sandbox talk over 127.0.0.1, reaches neither the host nor another sandbox, and leaves nothing', async () => {
    standIn = await startE2bStandIn({ sandboxRootDir: rootDir });
    const e2b = new E2B({ apiKey: standIn.apiKey, apiUrl: standIn.apiUrl, sandboxUrl: standIn.sandboxUrl });
    const [first, second] = await Promise.all([e2b.Sandbox.create({ timeoutMs: 60_000 }), e2b.Sandbox.create({ timeoutMs: 60_000 })]);
    let hostConnections = 0;
    host = createServer((socket) => {
      hostConnections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => host!.listen(0, '127.0.0.1', resolve));
    const hostPort = (host.address() as AddressInfo).port;
    const connect = (box: Sandbox, port: number) =>
      box.commands
        .run(`timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/${port} && cat <&3' || echo refused`, { timeoutMs: 20_000 })
        .then((result) => result.stdout.trim());

    // A listener in one command, as the LLM relay is; the next command of the same sandbox connects to it.
    let listening = false;
    const server = await first.commands.run(
      "python3 -c \"import socket; s = socket.socket(); s.bind(('127.0.0.1', 4567)); s.listen(); print('listening', flush=True); " +
        "c, _ = s.accept(); c.sendall(b'pong'); c.close()\"",
      { background: true, timeoutMs: 30_000, onStdout: (data) => void (listening ||= data.includes('listening')) },
    );
    await eventually(() => listening, 'the first command listens on 127.0.0.1:4567', 15_000);
    assert.equal(await connect(second, 4567), 'refused', "another sandbox has a loopback of its own: it cannot reach the first's listener");
    assert.equal(await connect(first, 4567), 'pong', 'a later command of the same sandbox reaches the listener on 127.0.0.1');
    assert.equal((await server.wait()).exitCode, 0);
    assert.equal(await connect(first, hostPort), 'refused', "the host's 127.0.0.1 stays out of reach");
    assert.equal(hostConnections, 0, 'no connection reached the host listener');
    const interfaces = await first.commands.run("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '", { timeoutMs: 20_000 });
    assert.equal(interfaces.stdout.trim(), 'lo', 'the namespace has no interface but loopback');

    assert.ok(
      mountsUnderRoot().some((line) => line.includes('nsfs')),
      "each sandbox's namespace is held by a mount under its directory",
    );
    await standIn.close();
    assert.deepEqual(mountsUnderRoot(), [], 'nothing stays mounted under the sandbox directories after close');
    assert.deepEqual(readdirSync(rootDir), [], 'no sandbox directory is left');
    assert.equal(netnsList(), namespacesBefore, 'ip netns list is as before');
  });
});
