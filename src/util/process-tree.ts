import { readdir, readFile } from 'node:fs/promises';
import os from 'node:os';

/** Sends a signal to a whole process group; a group that is already gone is not an error. */
export function signalProcessGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Pids of processes whose environment holds `NAME=value`. Processes that left their process group
 * (setsid, daemonising) still inherit the environment, so this finds what a group kill misses.
 * Linux only; elsewhere it finds nothing.
 */
export async function findProcessesByEnvMarker(name: string, value: string): Promise<number[]> {
  if (os.platform() !== 'linux') return [];
  const needle = Buffer.from(`${name}=${value}\0`);
  const found: number[] = [];
  const entries = await readdir('/proc').catch(() => [] as string[]);
  await Promise.all(
    entries.map(async (entry) => {
      if (!/^\d+$/.test(entry)) return;
      const pid = Number(entry);
      if (pid === process.pid) return;
      const environ = await readFile(`/proc/${entry}/environ`).catch(() => null);
      if (environ && (environ.subarray(0, needle.length).equals(needle) || environ.includes(Buffer.concat([Buffer.from([0]), needle])))) {
        found.push(pid);
      }
    }),
  );
  return found;
}

/** Sends SIGKILL to each pid (already gone is fine) and waits until none runs any more, or `timeoutMs` passes. */
export async function killAndWait(pids: number[], timeoutMs = 2000): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  // A process that is not our child is reaped by someone else: it is gone once it is gone or a zombie.
  const running = async (pid: number) => {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
    return stat !== null && stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  };
  const deadline = Date.now() + timeoutMs;
  let left = pids;
  while (left.length > 0 && Date.now() < deadline) {
    const states = await Promise.all(left.map(running));
    left = left.filter((_, index) => states[index]);
    if (left.length > 0) await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Pids of every descendant of `rootPid` (Linux /proc), children before grandchildren. */
export async function listDescendants(rootPid: number): Promise<number[]> {
  const entries = await readdir('/proc').catch(() => [] as string[]);
  const parentOf = new Map<number, number>();
  await Promise.all(
    entries.map(async (entry) => {
      if (!/^\d+$/.test(entry)) return;
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => null);
      if (!stat) return;
      // The command name may contain spaces and parentheses; fields resume after the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parentOf.set(Number(entry), Number(fields[1]));
    }),
  );
  const result: number[] = [];
  let frontier = [rootPid];
  while (frontier.length > 0) {
    const next: number[] = [];
    for (const [pid, ppid] of parentOf) if (frontier.includes(ppid)) next.push(pid);
    result.push(...next);
    frontier = next;
  }
  return result;
}
