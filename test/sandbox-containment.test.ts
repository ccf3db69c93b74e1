import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { resourcesDir } from '../src/paths.js';
import { createSandboxProvider } from '../src/sandbox/factory.js';
import { mountsUnder, mountTmpfs, unmount } from '../src/sandbox/local/tmpfs.js';
import { processesOf, UID_LOCK_DIR } from '../src/sandbox/local/uids.js';
import { bash, type Sandbox, type SandboxProvider } from '../src/sandbox/types.js';
import { isAlive } from '../src/util/process-tree.js';
import { makeSystemTempDir, removeDir, startServer, waitFor } from './helpers/server.js';

/**
 * Containment of local sandboxes on a root server: a pair of uids per sandbox, the verifier's own identity, a cgroup
 * with memory and pids limits, oom_score_adj and a size-capped /tmp. Everything here is real: bwrap, setpriv, cgroupfs.
 */

const notRoot = process.getuid?.() !== 0 && 'needs a root server (per-sandbox uids, cgroups, tmpfs mounts)';

const LIMITS = { OPENCODE_ENV_LIMIT_PROCESSES: '96', OPENCODE_ENV_LIMIT_MEMORY_MB: '256', OPENCODE_ENV_LIMIT_TMP_MB: '32' };

function provider(rootDir: string, env: Record<string, string>): SandboxProvider {
  const config = loadConfig({ OPENCODE_ENV_SANDBOX_DIR: rootDir, ...LIMITS, ...env });
  return createSandboxProvider(config.sandbox, {
    resourcesDir,
    hiddenPaths: [],
    binaries: () => ({ node: process.execPath }),
    logger: createLogger('silent'),
  });
}

async function sh(sandbox: Sandbox, line: string, as: 'agent' | 'verifier' = 'agent'): Promise<string> {
  const result = await sandbox.run(bash(line), { timeoutMs: 30_000, as });
  assert.equal(result.exitCode, 0, `${line}: ${result.stderr}`);
  return result.stdout.trim();
}

/** A server's (by default this process's) sandbox cgroup directories in any hierarchy, found by name under /sys/fs/cgroup. */
function ownCgroupDirs(sandboxId = '', serverPid = process.pid): string[] {
  const prefix = `opencode-env-${serverPid}-${sandboxId}`;
  const found: string[] = [];
  const walk = (dir: string, depth: number) => {
    let entries: string[];
    try {
      entries = readdirSync(dir);
    } catch {
      return;
    }
    for (const entry of entries) {
      const full = path.join(dir, entry);
      if (!lstatSync(full).isDirectory()) continue;
      if (entry.startsWith(prefix) && !entry.endsWith('-server')) found.push(full);
      else if (depth < 5) walk(full, depth + 1);
    }
  };
  walk('/sys/fs/cgroup', 0);
  return found;
}

function uidLocksOf(serverPid: number): string[] {
  if (!existsSync(UID_LOCK_DIR)) return [];
  return readdirSync(UID_LOCK_DIR).filter((entry) => {
    try {
      return readFileSync(path.join(UID_LOCK_DIR, entry), 'utf8').startsWith(`${serverPid} `);
    } catch {
      return false; // released meanwhile
    }
  });
}

function hostDir(rootDir: string, sandbox: Sandbox, ...parts: string[]): string {
  return path.join(rootDir, `opencode-env-${sandbox.id}`, ...parts);
}

/** The host pid of a long-lived process in the sandbox: the launcher's pid, which bwrap or setpriv exec'd into. */
async function sleeper(sandbox: Sandbox): Promise<{ pid: number; stop: () => Promise<void> }> {
  const proc = await sandbox.start(['sleep', '300']);
  return { pid: proc.pid, stop: () => proc.kill() };
}

for (const isolation of ['auto', 'none'] as const) {
  describe(`per-sandbox uids and the verifier's identity (OPENCODE_ENV_ISOLATION=${isolation})`, { skip: notRoot }, () => {
    let rootDir: string;
    let sandboxes: SandboxProvider;
    let a: Sandbox;
    let b: Sandbox;
    let uidA: number;
    let uidB: number;

    before(async () => {
      rootDir = makeSystemTempDir(`containment-${isolation}`);
      // A Python every uid can run (a pyenv under /root is not), so that plain processes drop privileges too.
      const python = existsSync('/usr/bin/python3') ? { OPENCODE_ENV_PYTHON: '/usr/bin/python3' } : {};
      sandboxes = provider(rootDir, { OPENCODE_ENV_ISOLATION: isolation, ...(isolation === 'none' ? python : {}) });
      [a, b] = await Promise.all([sandboxes.create({ label: 'a' }), sandboxes.create({ label: 'b' })]);
      uidA = Number(await sh(a!, 'id -u'));
      uidB = Number(await sh(b!, 'id -u'));
      if (uidA === 0) throw new Error('sandbox processes run as root here: install a Python every user can run at /usr/bin/python3');
    });
    after(async () => {
      await sandboxes.killAll();
      removeDir(rootDir);
    });

    it('gives each sandbox a pair of uids of its own, leased through a lock file while it lives', async () => {
      assert.notEqual(uidA, uidB, 'two sandboxes, two uids');
      for (const uid of [uidA, uidB]) assert.ok(uid >= 1_900_000_000 && uid % 2 === 0, `agent uid ${uid} from the sandbox range`);
      assert.equal(statSync(hostDir(rootDir, a, 'home', 'workdir')).uid, uidA, 'the workdir belongs to the agent uid');
      const locks = uidLocksOf(process.pid).map(Number);
      for (const uid of [uidA, uidB]) assert.ok(locks.includes((uid - 1_900_000_000) / 2), `a lock names this server for uid ${uid}`);
    });

    it("a process of one sandbox cannot signal another's", async () => {
      const victim = await sleeper(b);
      try {
        const attempt = await a.run(bash(`kill -KILL ${victim.pid}`), { timeoutMs: 10_000 });
        assert.notEqual(attempt.exitCode, 0, 'the kill failed');
        // Plain processes see the victim but may not signal it; under bubblewrap they do not even see it.
        assert.match(attempt.stderr, isolation === 'none' ? /not permitted/i : /no such process/i);
        assert.ok(isAlive(victim.pid), "the other sandbox's process still runs");
      } finally {
        await victim.stop();
      }
    });

    it('prepareVerifier kills the agent uid, hands the workdir over without following links, and only the verifier writes the reward dir', async () => {
      const box = await sandboxes.create({ label: 'verify' });
      try {
        const agentUid = Number(await sh(box, 'id -u'));
        await sh(box, 'mkdir -p src && echo code > src/main.py && ln -s /etc etc-link && ln -s /etc/hostname host-link');
        // An agent process that keeps trying to plant a reward, outside the process group of the command that started it.
        const loop = `setsid sh -c 'while :; do mkdir -p "${box.rewardDir}" && echo 1.0 > "${box.rewardDir}/reward.txt"; sleep 0.01; done' & sleep 300`;
        const proc = await box.start(bash(loop));
        await new Promise((resolve) => setTimeout(resolve, 300));
        assert.ok((await processesOf([agentUid])).length >= 2, 'the agent processes run');
        await box.prepareVerifier();
        await proc.exited;
        assert.deepEqual(await processesOf([agentUid]), [], 'no process of the agent uid is left');

        const verifierUid = Number(await sh(box, 'id -u', 'verifier'));
        assert.equal(verifierUid, agentUid + 1, "the verifier's uid is the pair's other half");
        const reward = hostDir(rootDir, box, 'home', 'logs', 'verifier');
        assert.equal(statSync(reward).uid, verifierUid, 'the reward dir is the verifier’s');
        assert.equal(statSync(path.dirname(reward)).uid, 0, '~/logs is the host’s');
        assert.deepEqual(readdirSync(reward), [], 'and empty');
        assert.equal(
          statSync(hostDir(rootDir, box, 'home', 'workdir', 'src', 'main.py')).uid,
          verifierUid,
          'the workdir is the verifier’s',
        );
        assert.equal(lstatSync(hostDir(rootDir, box, 'home', 'workdir', 'etc-link')).uid, verifierUid, 'a link itself is re-owned');
        assert.equal(statSync('/etc').uid, 0, 'what a link points to is not');
        assert.equal(statSync('/etc/hostname').uid, 0, 'what a link points to is not');

        const agentWrite = await box.run(bash(`echo 1.0 > "${box.rewardDir}/reward.txt"`), { timeoutMs: 10_000 });
        assert.notEqual(agentWrite.exitCode, 0, 'an agent command cannot write the reward dir');
        await sh(box, `echo 0.5 > "${box.rewardDir}/reward.txt" && echo built > build.txt`, 'verifier');
        assert.equal((await box.readFile(`${box.rewardDir}/reward.txt`)).toString(), '0.5\n');
        await box.writeFile(`${box.rewardDir}/test.sh`, 'exit 0');
        assert.equal(statSync(path.join(reward, 'test.sh')).uid, verifierUid, 'what the host writes there is the verifier’s');
        // The verifier's HOME and /tmp are its own: not readable by the agent uid.
        const peek = await box.run(bash(`ls "${isolation === 'none' ? hostDir(rootDir, box, 'verifier-home') : '/home/verifier'}"`), {
          timeoutMs: 10_000,
        });
        assert.notEqual(peek.exitCode, 0, "the agent cannot look into the verifier's HOME");
      } finally {
        await box.kill();
      }
    });

    it('gives every sandbox process oom_score_adj 1000, which it cannot lower', async () => {
      assert.equal(await sh(a, 'cat /proc/self/oom_score_adj'), '1000');
      // Written with CAP_SYS_RESOURCE, 1000 is also the floor; without it (this capability is sometimes withheld from
      // root in containers), the kernel lets any process go back down to 0, never below.
      const capEff = /^CapEff:\s+([0-9a-f]+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]!;
      const pinned = ((BigInt(`0x${capEff}`) >> 24n) & 1n) === 1n;
      const lower = await a.run(bash(`echo ${pinned ? 999 : -1} > /proc/self/oom_score_adj`), { timeoutMs: 10_000 });
      assert.notEqual(lower.exitCode, 0, 'lowering it is refused');
      await a.prepareVerifier();
      assert.equal(await sh(a, 'cat /proc/self/oom_score_adj', 'verifier'), '1000', 'verifier commands too');
    });

    it('caps the size of /tmp', async () => {
      const result = await b.run(bash('head -c 64M /dev/zero > "$TMPDIR/big"; echo "exit $?"; df -k "$TMPDIR" | tail -1'), {
        timeoutMs: 30_000,
      });
      assert.match(result.stdout, /^exit 1$/m, 'writing past 32 MB fails');
      assert.match(result.stderr, /No space left on device/);
      assert.match(result.stdout, /\s32768\s/, 'a 32 MB filesystem');
      await sh(b, 'rm -f "$TMPDIR/big"');
    });

    it('leaves no process, cgroup, uid lock or mount behind when killed', async () => {
      const box = await sandboxes.create({ label: 'gone' });
      const uid = Number(await sh(box, 'id -u'));
      const proc = await box.start(bash('setsid sleep 300 & sleep 300'));
      assert.ok(ownCgroupDirs(box.id).length > 0, 'the sandbox has cgroups while it lives');
      assert.ok((await mountsUnder(hostDir(rootDir, box))).length > 0, 'and its /tmp mount');
      await box.kill();
      await proc.exited;
      assert.deepEqual(await processesOf([uid, uid + 1]), [], 'no process of its uids');
      assert.deepEqual(ownCgroupDirs(box.id), [], 'no cgroup directory');
      assert.ok(!uidLocksOf(process.pid).includes(String((uid - 1_900_000_000) / 2)), 'no uid lock');
      assert.deepEqual(await mountsUnder(hostDir(rootDir, box)), [], 'no mount');
      assert.ok(!existsSync(hostDir(rootDir, box)), 'no directory');
    });
  });
}

describe('cgroup limits contain fork and memory bombs (bubblewrap)', { skip: notRoot }, () => {
  let rootDir: string;
  let sandboxes: SandboxProvider;
  let bystander: Sandbox;

  before(async () => {
    rootDir = makeSystemTempDir('containment-bombs');
    sandboxes = provider(rootDir, {});
    bystander = await sandboxes.create({ label: 'bystander' });
  });
  after(async () => {
    await sandboxes.killAll();
    removeDir(rootDir);
  });

  /** Runs `argv` in a fresh sandbox for `ms`; meanwhile the bystander sandbox and this process must keep working. */
  async function bomb(argv: string[], ms: number) {
    const box = await sandboxes.create({ label: 'bomb' });
    try {
      const uid = Number(await sh(box, 'id -u'));
      const running = box.run(argv, { timeoutMs: ms, maxOutputBytes: 4096 });
      let peak = 0;
      const started = Date.now();
      let bystanderRuns = 0;
      while (Date.now() - started < ms - 500) {
        peak = Math.max(peak, (await processesOf([uid])).length);
        const beat = performance.now();
        assert.equal(await sh(bystander, 'echo ok'), 'ok', 'another sandbox still runs commands');
        assert.ok(performance.now() - beat < 10_000, 'promptly');
        bystanderRuns++;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      const result = await running;
      assert.ok(bystanderRuns > 0, 'the bystander ran during the bomb');
      assert.ok(peak <= 96 + 2, `the bomb stayed within the pids limit (peak ${peak} processes of its uid)`);
      assert.equal(await sh(box, 'echo alive'), 'alive', 'the bombed sandbox recovers once the bomb is killed');
      return { result, uid };
    } finally {
      await box.kill();
    }
  }

  it('contains a bash fork bomb', async () => {
    // bash gives up once forks keep failing, or runs until the deadline: either way it is over, and contained.
    const { result } = await bomb(['bash', '-c', ':(){ :|:& };:; wait'], 4000);
    assert.ok(result.durationMs < 15_000, `it ended (exit ${result.exitCode})`);
  });

  it('contains a Python os.fork loop', async () => {
    const code = 'import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass';
    const { result } = await bomb(['python3', '-c', code], 4000);
    assert.equal(result.timedOut, true, 'it ran until its deadline');
  });

  it('kills a Python process allocating 8 GB inside its cgroup, and the server survives', async (t) => {
    const box = await sandboxes.create({ label: 'memory' });
    try {
      const probe = await sleeper(box);
      const inGroup = () =>
        readFileSync(`/proc/${probe.pid}/cgroup`, 'utf8')
          .split('\n')
          .some((line) => /:memory:|^0::/.test(line) && line.includes(`opencode-env-${process.pid}-${box.id}`));
      // The launcher joins the group right after it starts.
      await waitFor(inGroup, 5000, 'the sandbox process to join its cgroup').catch(() => undefined);
      const contained = inGroup();
      await probe.stop();
      if (!contained) return t.skip('no memory cgroup here: the 8 GB allocation would not be contained');
      const result = await box.run(['python3', '-c', 'x = b"x" * (8 << 30); print("allocated")'], { timeoutMs: 60_000 });
      assert.equal(result.timedOut, false);
      assert.ok(result.exitCode === 137 || result.signal === 'SIGKILL', `killed by SIGKILL (exit ${result.exitCode}, ${result.signal})`);
      assert.ok(!result.stdout.includes('allocated'));
      // v1 memory.oom_control and v2 memory.events both count the group's OOM kills.
      const counters = ownCgroupDirs(box.id)
        .flatMap((dir) => ['memory.oom_control', 'memory.events'].map((file) => path.join(dir, file)))
        .filter((file) => existsSync(file))
        .map((file) => readFileSync(file, 'utf8'));
      assert.match(counters.join('\n'), /oom_kill [1-9]/, 'the OOM kill happened in the sandbox’s cgroup');
      assert.equal(await sh(bystander, 'echo ok'), 'ok', 'another sandbox still works');
    } finally {
      await box.kill();
    }
  });
});

describe('what a killed server left behind', { skip: notRoot }, () => {
  it('is removed when the next server sets up: uid locks, cgroups, tmpfs mounts and directories', async () => {
    const rootDir = makeSystemTempDir('containment-orphans');
    const first = provider(rootDir, {});
    const second = provider(rootDir, {});
    const orphanDirs: string[] = [];
    const lock = path.join(UID_LOCK_DIR, String(32_767));
    try {
      // Where this host puts sandbox cgroups, learnt from a live sandbox.
      const live = await first.create({ label: 'live' });
      const parents = ownCgroupDirs(live.id).map((dir) => path.dirname(dir));
      await live.kill();
      // A pid that is certainly gone.
      const dead = spawnSync('true').pid;
      for (const parent of parents) {
        orphanDirs.push(path.join(parent, `opencode-env-${dead}-orphan`));
        mkdirSync(orphanDirs.at(-1)!);
      }
      if (!existsSync(lock)) writeFileSync(lock, `${dead} 1\n`);
      const sandboxDir = path.join(rootDir, 'opencode-env-orphan-000000000000');
      mkdirSync(path.join(sandboxDir, 'scratch'), { recursive: true });
      writeFileSync(path.join(sandboxDir, 'owner.json'), JSON.stringify({ pid: dead }));
      await mountTmpfs(path.join(sandboxDir, 'scratch'), 1024 * 1024);
      writeFileSync(path.join(sandboxDir, 'scratch', 'left'), 'x');

      await second.isolation(); // sets the provider up
      for (const dir of orphanDirs) assert.ok(!existsSync(dir), `${dir} was removed`);
      assert.ok(!existsSync(lock) || readFileSync(lock, 'utf8') !== `${dead} 1\n`, 'the dead server’s uid lock was reclaimed');
      assert.deepEqual(await mountsUnder(sandboxDir), [], 'its tmpfs was unmounted');
      assert.ok(!existsSync(sandboxDir), 'its directory was removed');
    } finally {
      await first.killAll();
      await second.killAll();
      for (const dir of orphanDirs) if (existsSync(dir)) rmdirSync(dir);
      for (const mountPoint of await mountsUnder(rootDir)) await unmount(mountPoint);
      removeDir(rootDir);
    }
  });
});

describe('a server killed outright (SIGKILL)', { skip: notRoot }, () => {
  it('leaves no tmpfs mount, cgroup or uid lock behind: its reaper releases them at once', async () => {
    const server = await startServer();
    try {
      await server.callOk('execute_python', { code: '1' });
      const cgroupsOf = () => ownCgroupDirs('', server.pid);
      const locksOf = () => uidLocksOf(server.pid);
      assert.ok((await mountsUnder(server.sandboxRoot)).length > 0, 'the sandbox has a tmpfs');
      assert.ok(cgroupsOf().length > 0, 'and cgroups');
      assert.ok(locksOf().length > 0, 'and a uid lock');
      process.kill(server.pid, 'SIGKILL');
      await waitFor(async () => (await mountsUnder(server.sandboxRoot)).length === 0, 10_000, 'the tmpfs to be unmounted');
      await waitFor(() => cgroupsOf().length === 0, 10_000, 'the cgroups to be removed');
      await waitFor(() => locksOf().length === 0, 10_000, 'the uid lock to be released');
    } finally {
      await server.close().catch(() => undefined);
    }
  });
});
