import { readdir, readFile } from 'node:fs/promises';
import { killAndWait, listDescendants } from '../src/util/process-tree.js';

/** The variables every sandbox process carries (src/sandbox/local/local-sandbox.ts, local-process.ts). */
const MARKERS = ['OPENCODE_ENV_SANDBOX_ID', 'OPENCODE_ENV_PROCESS_ID'];

export interface MarkedProcess {
  pid: number;
  marker: string;
  command: string;
}

/**
 * Processes whose sandbox marker names one of `sandboxIds` (a process id is `<sandbox id>-<n>`).
 * Other people's sandboxes on the same machine carry markers too, so only ours are counted.
 */
export async function markedProcesses(sandboxIds: ReadonlySet<string>): Promise<MarkedProcess[]> {
  if (sandboxIds.size === 0) return [];
  const found: MarkedProcess[] = [];
  const entries = await readdir('/proc').catch(() => [] as string[]);
  await Promise.all(
    entries.map(async (entry) => {
      if (!/^\d+$/.test(entry) || Number(entry) === process.pid) return;
      const environ = await readFile(`/proc/${entry}/environ`, 'latin1').catch(() => null);
      if (!environ) return;
      for (const variable of environ.split('\0')) {
        const [name, value] = [variable.slice(0, variable.indexOf('=')), variable.slice(variable.indexOf('=') + 1)];
        if (!MARKERS.includes(name)) continue;
        if ([...sandboxIds].some((id) => value === id || value.startsWith(`${id}-`))) {
          const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
          if (stat && stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') return;
          const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
          found.push({ pid: Number(entry), marker: value, command: cmdline.split('\0').join(' ').trim().slice(0, 80) });
          return;
        }
      }
    }),
  );
  return found;
}

/** Waits up to `timeoutMs` for our marked processes to be gone; kills (and returns) whatever is still there. */
export async function reapLeftovers(sandboxIds: ReadonlySet<string>, timeoutMs: number): Promise<MarkedProcess[]> {
  const deadline = Date.now() + timeoutMs;
  let left = await markedProcesses(sandboxIds);
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    left = await markedProcesses(sandboxIds);
  }
  if (left.length > 0) await killAndWait(left.map((p) => p.pid));
  return left;
}

/** A process as it was seen: its start time tells it from a later process that got the same pid. */
export interface SeenProcess {
  pid: number;
  start: string;
  command: string;
}

async function startTime(pid: number): Promise<string | null> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (stat === null) return null;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[0] === 'Z' ? null : (fields[19] ?? null);
}

/** Every descendant of `pid` right now (to check, once it has exited, that none outlived it). */
export async function processTree(pid: number): Promise<SeenProcess[]> {
  const seen = await Promise.all(
    (await listDescendants(pid)).map(async (child) => ({
      pid: child,
      start: await startTime(child),
      command: (await readFile(`/proc/${child}/cmdline`, 'utf8').catch(() => '')).split('\0').join(' ').trim().slice(0, 80),
    })),
  );
  return seen.filter((p): p is SeenProcess => p.start !== null);
}

/** Waits up to `timeoutMs` for the processes of a snapshot to end; kills (and returns) those still running. */
export async function reapSurvivors(snapshot: SeenProcess[], timeoutMs: number): Promise<SeenProcess[]> {
  const alive = async () =>
    (await Promise.all(snapshot.map(async (p) => ((await startTime(p.pid)) === p.start ? p : null)))).filter((p) => p !== null);
  const deadline = Date.now() + timeoutMs;
  let left = await alive();
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    left = await alive();
  }
  if (left.length > 0) await killAndWait(left.map((p) => p.pid));
  return left;
}
