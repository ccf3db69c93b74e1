import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { removeDir, repoRoot } from '../../test/helpers/server.js';
import { createLimitedCgroup } from '../cgroup.js';
import type { Case, CaseContext } from '../harness.js';
import { resultText, type Server } from '../server.js';

const GiB = 1024 * 1024 * 1024;
const CONTAINER = { memoryBytes: 2 * GiB, pids: 2048 };

const FORK_BOMB = 'import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass';
const MEMORY_BOMB = "blocks = []\nwhile True:\n    blocks.append(b'x' * (64 << 20))";
const FORKS = "import subprocess\nprint(subprocess.run(['true']).returncode)";

/** Runs FORKS in the server's episode: '0' when it could fork. */
async function forks(server: Server): Promise<string> {
  try {
    const result = await server.call('execute_python', { code: FORKS, timeout_s: 20 }, { timeoutMs: 60_000 });
    const stdout = ((result.structuredContent as { stdout?: string } | undefined)?.stdout ?? '').trim();
    return result.isError ? `isError ${resultText(result).slice(0, 60)}` : stdout || `no output (${resultText(result).slice(0, 80)})`;
  } catch (error) {
    return `failed: ${(error as Error).message.slice(0, 80)}`;
  }
}

/**
 * The server runs inside a memory- and pids-limited cgroup, as in a container, and a neighbour server beside
 * it. A bomb in the first server's episode must not take that server down (the OOM killer must pick the
 * sandbox), nor stop the neighbour (same process limit, possibly the same uid) or the server's next episode
 * from forking. `processLimit` (OPENCODE_ENV_LIMIT_PROCESSES) below the cgroup's pids limit lets a fork
 * bomb reach a per-uid limit, which shows whether sandboxes share it.
 */
function bombCase(id: string, title: string, bomb: string, options: { timeoutS: number; processLimit?: number }): Case {
  const env: Record<string, string> = options.processLimit ? { OPENCODE_ENV_LIMIT_PROCESSES: String(options.processLimit) } : {};
  const limit = options.processLimit ? `, OPENCODE_ENV_LIMIT_PROCESSES=${options.processLimit}` : '';
  return {
    id,
    title,
    sent: `server in a cgroup (memory 2 GiB, pids 2048)${limit}; execute_python ${title.split(',')[0]} (timeout_s ${options.timeoutS}); a neighbour server forks meanwhile; reset, fork`,
    alone: true,
    needsRoot: true,
    async run(t: CaseContext) {
      const name = `opencode-env-reliability-${id}-${randomBytes(3).toString('hex')}`;
      const cgroup = createLimitedCgroup(name, CONTAINER.memoryBytes, CONTAINER.pids);
      t.defer(async () => {
        // After the servers are gone: the sandboxes' own groups inside this one must be gone too.
        const left = cgroup.childGroups();
        await cgroup.remove();
        t.expect(left.length === 0, `cgroups left behind: ${left.join(', ')}`);
      });
      const server = await t.server({ wrap: cgroup.wrap, env });
      const neighbour = await t.server({ env });
      await Promise.all([server.callOk('execute_python', { code: '1' }), neighbour.callOk('execute_python', { code: '1' })]);
      const started = performance.now();
      const bombCall = server.call('execute_python', { code: bomb, timeout_s: options.timeoutS }, { timeoutMs: 120_000 }).then(
        (result) =>
          result.isError ? `isError ${resultText(result).slice(0, 60)}` : JSON.stringify(result.structuredContent).slice(0, 120),
        (error: Error) => `failed: ${error.message.slice(0, 80)}`,
      );
      await sleep((options.timeoutS * 1000) / 2);
      const neighbourForks = await forks(neighbour);
      const bombResult = await bombCall;
      const seconds = (performance.now() - started) / 1000;
      t.expect(server.alive, `the server died (OOM kills in its cgroup: ${cgroup.oomKills()})`);
      t.expect(seconds < options.timeoutS + 30, `the bomb call took ${seconds.toFixed(0)} s`);
      t.expect(neighbourForks === '0', `the neighbour could not fork during the bomb: ${neighbourForks}`);
      let nextEpisode = 'not tried';
      if (server.alive) {
        const reset = await server.call('reset', {}, { timeoutMs: 60_000 }).catch((error: Error) => error);
        nextEpisode = reset instanceof Error ? `reset failed: ${reset.message}` : await forks(server);
        t.expect(nextEpisode === '0', `the next episode could not fork: ${nextEpisode}`);
      }
      return `bomb: ${bombResult} after ${seconds.toFixed(0)} s; server ${server.alive ? 'alive' : 'DEAD'}, OOM kills ${cgroup.oomKills()}; neighbour fork: ${neighbourForks}; next episode fork: ${nextEpisode}`;
    },
  };
}

/** Runs `code` in a fresh server's episode and parses the JSON it prints. */
async function probe(t: CaseContext, code: string): Promise<Record<string, any>> {
  const server = await t.server();
  const out = await server.callOk('execute_python', { code, timeout_s: 30 });
  try {
    return JSON.parse(String(out.stdout));
  } catch {
    throw new Error(`the probe printed no JSON: ${JSON.stringify(out).slice(0, 300)}`);
  }
}

const IDENTITY = "import json, os\nprint(json.dumps({'uid': os.getuid(), 'oom': open('/proc/self/oom_score_adj').read().strip()}))";

export const containmentCases: Case[] = [
  bombCase('7a', 'fork bomb', FORK_BOMB, { timeoutS: 8 }),
  bombCase('7b', 'memory bomb', MEMORY_BOMB, { timeoutS: 30 }),
  bombCase('7c', 'fork bomb, process limit 512', FORK_BOMB, { timeoutS: 8, processLimit: 512 }),
  {
    id: '17a',
    title: 'own uid per sandbox, OOM-killer first',
    sent: 'execute_python in two servers: os.getuid(), /proc/self/oom_score_adj',
    async run(t) {
      const [a, b] = await Promise.all([probe(t, IDENTITY), probe(t, IDENTITY)]);
      t.expect(a.uid !== b.uid, `both sandboxes run as uid ${a.uid}`);
      t.expect(a.oom === '1000' && b.oom === '1000', `oom_score_adj ${a.oom} and ${b.oom}`);
      return `uids ${a.uid} and ${b.uid}; oom_score_adj ${a.oom}, ${b.oom}`;
    },
  },
  {
    id: '17b',
    title: 'size-capped /tmp and /dev/shm',
    sent: 'execute_python: statvfs of /tmp and /dev/shm (each must be at most 2 GiB)',
    async run(t) {
      const sizes = await probe(
        t,
        "import json, os\ndef size(p):\n    try:\n        s = os.statvfs(p)\n        return s.f_blocks * s.f_frsize\n    except OSError:\n        return 0\nprint(json.dumps({'tmp': size('/tmp'), 'shm': size('/dev/shm')}))",
      );
      const gib = (bytes: number) => `${(bytes / GiB).toFixed(2)} GiB`;
      t.expect(sizes.tmp <= 2 * GiB, `/tmp is ${gib(sizes.tmp)}`);
      t.expect(sizes.shm <= 2 * GiB, `/dev/shm is ${gib(sizes.shm)}`);
      return `/tmp ${gib(sizes.tmp)}, /dev/shm ${gib(sizes.shm)}`;
    },
  },
  {
    id: '17c',
    title: 'no nested user namespaces or mounts',
    sent: 'execute_python: unshare(CLONE_NEWUSER) via ctypes, `unshare -Urm mount -t tmpfs`',
    async run(t) {
      const result = await probe(
        t,
        [
          'import ctypes, json, subprocess',
          "child = 'import ctypes; print(ctypes.CDLL(None, use_errno=True).unshare(0x10000000))'",
          "userns = subprocess.run(['python3', '-c', child], capture_output=True, text=True).stdout.strip()",
          "mount = subprocess.run(['unshare', '-Urm', 'mount', '-t', 'tmpfs', 'none', '/mnt'], capture_output=True, text=True)",
          "print(json.dumps({'userns': userns, 'mount': mount.returncode, 'mount_err': mount.stderr.strip()[:80]}))",
        ].join('\n'),
      );
      t.expect(result.userns === '-1', `unshare(CLONE_NEWUSER) returned ${result.userns}`);
      t.expect(result.mount !== 0, 'mounted a tmpfs in a new user and mount namespace');
      return `unshare(CLONE_NEWUSER) = ${result.userns}; unshare -Urm mount: exit ${result.mount} ${result.mount_err}`;
    },
  },
  {
    id: '17d',
    title: 'host files outside the allow-list hidden',
    sent: 'execute_python reads a world-readable file of another project on the host, and lists /root and the checkout',
    async run(t) {
      const dir = path.join(repoRoot, '.test-tmp', `reliability-other-project-${randomBytes(3).toString('hex')}`);
      mkdirSync(dir, { recursive: true });
      chmodSync(dir, 0o755);
      writeFileSync(path.join(dir, 'secret.txt'), 'other-project-secret', { mode: 0o644 });
      t.defer(() => removeDir(dir));
      const seen = await probe(
        t,
        [
          'import json, os',
          'def read(p):\n    try:\n        return open(p).read()\n    except OSError as e:\n        return type(e).__name__',
          'def ls(p):\n    try:\n        return sorted(os.listdir(p))\n    except OSError as e:\n        return type(e).__name__',
          `print(json.dumps({'secret': read(${JSON.stringify(path.join(dir, 'secret.txt'))}), 'checkout': ls(${JSON.stringify(repoRoot)}), 'root': ls('/root')}))`,
        ].join('\n'),
      );
      t.expect(seen.secret !== 'other-project-secret', 'read another project’s file');
      const sourceVisible = Array.isArray(seen.checkout) && seen.checkout.includes('src');
      t.expect(!sourceVisible, `the checkout's sources are visible (${seen.checkout.length} entries)`);
      const show = (v: unknown) => (Array.isArray(v) ? `${v.length} entries` : String(v));
      return `other project's file: ${seen.secret === 'other-project-secret' ? 'READ' : seen.secret}; checkout: ${show(seen.checkout)}; /root: ${show(seen.root)}`;
    },
  },
];
