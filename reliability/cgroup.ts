import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { killAndWait } from '../src/util/process-tree.js';

const ROOT = '/sys/fs/cgroup';

/** A memory- and pids-limited cgroup for the server, as a container with --memory and --pids-limit gives it. */
export interface LimitedCgroup {
  /** Wraps argv so that the process joins the group before it execs. */
  wrap: (argv: string[]) => string[];
  /** OOM kills in the group so far. */
  oomKills: () => number;
  /** Groups the server made inside this one and did not remove (per-sandbox groups). */
  childGroups(): string[];
  /** Kills whatever is still in the group (all of it started by this harness) and removes it, child groups first. */
  remove(): Promise<void>;
}

/** The calling process's cgroup path in the hierarchy of `controller` ('' for v2's unified one). */
function ownPath(controller: string): string {
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const [, controllers, where] = line.split(':');
    if (where !== undefined && (controller === '' ? controllers === '' : controllers!.split(',').includes(controller))) return where;
  }
  throw new Error(`no ${controller || 'unified'} cgroup in /proc/self/cgroup`);
}

/** Every cgroup below `dir`, deepest first. */
function descendants(dir: string): string[] {
  let children: string[];
  try {
    children = readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => path.join(dir, e.name));
  } catch {
    return [];
  }
  return children.flatMap((child) => [...descendants(child), child]);
}

function members(dirs: string[]): number[] {
  return dirs.flatMap((dir) => {
    try {
      return readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    } catch {
      return [];
    }
  });
}

/** Creates the group under the harness's own cgroup: v1 memory + pids hierarchies where they exist, else v2. */
export function createLimitedCgroup(name: string, memoryBytes: number, pids: number): LimitedCgroup {
  const v1 = existsSync(path.join(ROOT, 'memory', 'cgroup.procs')) && existsSync(path.join(ROOT, 'pids', 'cgroup.procs'));
  let dirs: string[];
  let oomFile: string;
  if (v1) {
    const memory = path.join(ROOT, 'memory', ownPath('memory'), name);
    const pidsDir = path.join(ROOT, 'pids', ownPath('pids'), name);
    dirs = [memory, pidsDir];
    for (const dir of dirs) mkdirSync(dir);
    writeFileSync(path.join(memory, 'memory.limit_in_bytes'), String(memoryBytes));
    writeFileSync(path.join(pidsDir, 'pids.max'), String(pids));
    oomFile = path.join(memory, 'memory.oom_control');
  } else {
    const parent = path.join(ROOT, ownPath(''));
    const dir = path.join(parent, name);
    dirs = [dir];
    try {
      writeFileSync(path.join(parent, 'cgroup.subtree_control'), '+memory +pids');
    } catch {
      // already enabled, or not ours to enable: the limit writes below tell
    }
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'memory.max'), String(memoryBytes));
    writeFileSync(path.join(dir, 'pids.max'), String(pids));
    oomFile = path.join(dir, 'memory.events');
  }
  const join = dirs.map((dir) => `echo $$ > ${path.join(dir, 'cgroup.procs')}`).join(' && ');
  return {
    wrap: (argv) => ['sh', '-c', `${join} && exec "$@"`, 'sh', ...argv],
    oomKills: () => {
      try {
        return Number(/oom_kill (\d+)/.exec(readFileSync(oomFile, 'utf8'))?.[1] ?? 0);
      } catch {
        return NaN;
      }
    },
    childGroups: () => dirs.flatMap((dir) => descendants(dir).map((child) => path.relative(dir, child))),
    async remove() {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const all = dirs.flatMap((dir) => [...descendants(dir), dir]);
        await killAndWait(members(all));
        try {
          for (const dir of all) if (existsSync(dir)) rmdirSync(dir);
          return;
        } catch (error) {
          if (Date.now() > deadline) throw error;
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      }
    },
  };
}
