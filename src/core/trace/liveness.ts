import { readFileSync } from 'node:fs';

/**
 * Whether the process that began a trace still runs. A pid alone is not enough: containers restart with the
 * same small pids, so a trace records its writer's start too (boot id and start time from /proc), and a pid
 * that now belongs to another process counts as dead.
 */

export interface WriterIdentity {
  pid: number;
  start: string | null;
}

function readText(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks after boot); the command name before it may hold spaces. */
function startTicks(pid: number | 'self'): string | null {
  const stat = readText(`/proc/${pid}/stat`);
  if (stat === null) return null;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19] ?? null;
}

function processStart(pid: number | 'self'): string | null {
  const ticks = startTicks(pid);
  const bootId = readText('/proc/sys/kernel/random/boot_id')?.trim();
  return ticks && bootId ? `${bootId}:${ticks}` : null;
}

let self: WriterIdentity | null = null;

export function currentWriter(): WriterIdentity {
  self ??= { pid: process.pid, start: processStart('self') };
  return self;
}

export function writerAlive(writer: { pid: unknown; start: unknown }): boolean {
  const { pid, start } = writer;
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0) return false;
  const me = currentWriter();
  if (pid === me.pid && start === me.start) return true;
  if (typeof start === 'string' && me.start !== null) return processStart(pid) === start;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, as another user
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
