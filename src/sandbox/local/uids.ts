import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { link, lstat, mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { SandboxUids } from './isolation.js';

/**
 * Per-sandbox uids. A root server gives every sandbox a pair of uids of its own (agent, verifier; gid = uid), so
 * that process limits, signals and file ownership are per sandbox, and the verifier is out of the agent's reach.
 * The pairs are leased through lock files in a root-only directory that every server on this host shares: a lock is
 * created with O_EXCL and names its owner (pid and start time), and a lock whose owner is gone is reclaimed.
 */

export const UID_LOCK_DIR = '/run/opencode-env/uids';
/** In the range systemd leaves unused (1879048192-2147352575): no login, container or dynamic users live there. */
const UID_BASE = 1_900_000_000;
const SLOT_COUNT = 32_768;

export interface UidLease {
  readonly uids: SandboxUids;
  /** Kills what still runs under the pair and frees it for another sandbox. Safe to call more than once. */
  release(): Promise<void>;
}

function uidsOfSlot(slot: number): SandboxUids {
  return { agent: UID_BASE + 2 * slot, verifier: UID_BASE + 2 * slot + 1 };
}

/** A process's start time (clock ticks since boot), which tells a live owner from a later process with its pid. */
async function startTimeOf(pid: number): Promise<string | null> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (stat === null) return null;
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
}

async function ownerToken(): Promise<string> {
  return `${process.pid} ${(await startTimeOf(process.pid)) ?? '?'}\n`;
}

async function ownerAlive(token: string): Promise<boolean> {
  const [pid, start] = token.trim().split(' ');
  if (!pid || !/^\d+$/.test(pid)) return false;
  const current = await startTimeOf(Number(pid));
  return current !== null && (start === '?' || current === start);
}

/** Whether the whole uid range exists in this process's user namespace (it may not, e.g. in a rootless container). */
async function rangeIsMapped(): Promise<boolean> {
  const map = await readFile('/proc/self/uid_map', 'utf8').catch(() => null);
  if (map === null) return false;
  const last = UID_BASE + 2 * SLOT_COUNT - 1;
  return map
    .trim()
    .split('\n')
    .some((line) => {
      const [inside, , count] = line.trim().split(/\s+/).map(Number);
      return inside !== undefined && count !== undefined && inside <= UID_BASE && last < inside + count;
    });
}

/** Pids of live (not zombie) processes whose real or effective uid is one of `uids`. */
export async function processesOf(uids: number[]): Promise<number[]> {
  const wanted = new Set(uids.map(String));
  const entries = await readdir('/proc').catch(() => [] as string[]);
  const found: number[] = [];
  await Promise.all(
    entries.map(async (entry) => {
      if (!/^\d+$/.test(entry)) return;
      const status = await readFile(`/proc/${entry}/status`, 'utf8').catch(() => null);
      if (status === null || /^State:\s+[ZX]/m.test(status)) return;
      const ids = /^Uid:\s+(\d+)\s+(\d+)/m.exec(status);
      if (ids && (wanted.has(ids[1]!) || wanted.has(ids[2]!))) found.push(Number(entry));
    }),
  );
  return found;
}

/** `kill -9 -1` as `uid`: one atomic sweep of every process of that uid, which a fork bomb cannot outrun. */
function killEverythingAs(uid: number): Promise<void> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', 'kill -9 -1'], { uid, gid: uid, stdio: 'ignore' });
    child.once('error', () => resolve());
    child.once('close', () => resolve());
  });
}

/** Kills every process running under any of `uids` (root only), and waits until none is left or `timeoutMs` passes. */
export async function killProcessesOf(uids: number[], timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = await processesOf(uids);
    if (left.length === 0 || Date.now() > deadline) return;
    await Promise.all(uids.map(killEverythingAs));
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Hands out uid pairs on this host. `problem()` says why it cannot (then sandboxes share one uid). */
export class UidAllocator {
  constructor(private readonly lockDir = UID_LOCK_DIR) {}

  /** null when per-sandbox uids work here; otherwise why not. */
  async problem(): Promise<string | null> {
    if (process.getuid?.() !== 0) return 'the server does not run as root';
    if (!(await rangeIsMapped())) return `uids ${UID_BASE}-${UID_BASE + 2 * SLOT_COUNT - 1} do not exist in this user namespace`;
    try {
      await this.ensureLockDir();
    } catch (error) {
      return `cannot use ${this.lockDir}: ${(error as Error).message}`;
    }
    return null;
  }

  /** The lock directory must be root's and private: whoever can write it could take another sandbox's uids. */
  private async ensureLockDir(): Promise<void> {
    await mkdir(this.lockDir, { recursive: true, mode: 0o700 });
    const info = await lstat(this.lockDir);
    if (!info.isDirectory() || info.uid !== 0 || (info.mode & 0o022) !== 0) {
      throw new Error(`${this.lockDir} must be a directory owned by root and writable only by it`);
    }
  }

  async allocate(): Promise<UidLease> {
    await this.ensureLockDir();
    const token = await ownerToken();
    // Start at a random slot, so that concurrent servers rarely contend for the same lock.
    const first = randomBytes(4).readUInt32BE() % SLOT_COUNT;
    for (let i = 0; i < SLOT_COUNT; i++) {
      const slot = (first + i) % SLOT_COUNT;
      if (await this.tryLock(slot, token)) return this.lease(slot, token);
    }
    throw new Error(`all ${SLOT_COUNT} sandbox uid pairs are in use`);
  }

  private lockPath(slot: number): string {
    return path.join(this.lockDir, String(slot));
  }

  private async tryLock(slot: number, token: string): Promise<boolean> {
    if (await this.create(slot, token)) return true;
    const holder = await readFile(this.lockPath(slot), 'utf8').catch(() => null);
    if (holder === null || (await ownerAlive(holder))) return false;
    // A server killed with its sandboxes may have left processes under these uids.
    const { agent, verifier } = uidsOfSlot(slot);
    await killProcessesOf([agent, verifier]);
    return (await this.reclaim(slot, holder)) && this.create(slot, token);
  }

  private async create(slot: number, token: string): Promise<boolean> {
    try {
      const handle = await open(
        this.lockPath(slot),
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
        0o600,
      );
      try {
        await handle.writeFile(token);
      } finally {
        await handle.close();
      }
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw error;
    }
  }

  /**
   * Removes a dead owner's lock without racing another server doing the same: the lock is renamed away (atomic), and
   * if what was renamed turns out to be a fresh lock that a live server took in the meantime, it is linked back.
   */
  private async reclaim(slot: number, staleToken: string): Promise<boolean> {
    const aside = `${this.lockPath(slot)}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      await rename(this.lockPath(slot), aside);
    } catch {
      return false; // someone else reclaimed it first
    }
    const moved = await readFile(aside, 'utf8').catch(() => null);
    if (moved !== staleToken) await link(aside, this.lockPath(slot)).catch(() => undefined);
    await unlink(aside).catch(() => undefined);
    return moved === staleToken;
  }

  private lease(slot: number, token: string): UidLease {
    const uids = uidsOfSlot(slot);
    let releasing: Promise<void> | null = null;
    return {
      uids,
      release: () =>
        (releasing ??= (async () => {
          await killProcessesOf([uids.agent, uids.verifier]);
          const holder = await readFile(this.lockPath(slot), 'utf8').catch(() => null);
          if (holder === token) await unlink(this.lockPath(slot)).catch(() => undefined);
        })()),
    };
  }

  /** Frees the locks of servers that are gone (their sandboxes' processes are killed first). */
  async reclaimOrphans(): Promise<number> {
    const entries = await readdir(this.lockDir).catch(() => [] as string[]);
    let reclaimed = 0;
    for (const entry of entries.filter((e) => /^\d+$/.test(e))) {
      const slot = Number(entry);
      const holder = await readFile(this.lockPath(slot), 'utf8').catch(() => null);
      if (holder === null || (await ownerAlive(holder))) continue;
      const { agent, verifier } = uidsOfSlot(slot);
      await killProcessesOf([agent, verifier]);
      if (await this.reclaim(slot, holder)) reclaimed++;
    }
    return reclaimed;
  }
}
