import { randomBytes } from 'node:crypto';
import { access, mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isAlive } from '../../util/process-tree.js';

/**
 * One cgroup per sandbox, with a memory limit and a pids limit, wherever the server can create cgroups: cgroup v2
 * (a delegated subtree, or root with a writable cgroupfs) or the v1 memory and pids hierarchies. Sandbox groups go
 * under the server's own cgroup, so that a limit on the server (a container's `--memory`) still covers them.
 */

export interface CgroupLimits {
  memoryBytes: number;
  pids: number;
}

const GROUP_PREFIX = 'opencode-env-';

/** Where sandbox groups are made in one hierarchy, and how limits are written there. */
interface Hierarchy {
  /** The server's own cgroup directory: sandbox groups are its children. */
  parent: string;
  /** Limit files to write in a new group, in order (v1 memsw must follow memory). Optional ones may be missing. */
  limitFiles(limits: CgroupLimits): { file: string; value: string; optional?: boolean }[];
}

/** A sandbox's cgroup (one directory per hierarchy). Its processes join it through `procsFiles`. */
export class SandboxCgroup {
  constructor(
    private readonly dirs: string[],
    private readonly version: 'v1' | 'v2',
  ) {}

  get procsFiles(): string[] {
    return this.dirs.map((dir) => path.join(dir, 'cgroup.procs'));
  }

  private async members(): Promise<number[]> {
    const lists = await Promise.all(this.procsFiles.map((file) => readFile(file, 'utf8').catch(() => '')));
    return [...new Set(lists.flatMap((list) => list.split('\n').filter(Boolean).map(Number)))];
  }

  /** Kills every process in the group and waits until it is empty (or `timeoutMs` passes). */
  async kill(timeoutMs = 5000): Promise<void> {
    // v2's cgroup.kill is atomic; otherwise kill what is listed until nothing is (the pids limit bounds a fork bomb).
    if (this.version === 'v2') await writeFile(path.join(this.dirs[0]!, 'cgroup.kill'), '1').catch(() => undefined);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const members = await this.members();
      if (members.length === 0 || Date.now() > deadline) return;
      for (const pid of members) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Kills what is left and removes the group's directories. */
  async remove(): Promise<void> {
    await this.kill();
    await Promise.all(this.dirs.map(removeGroupDir));
  }
}

/** rmdir fails (EBUSY) for a moment while killed processes are still being torn down. */
async function removeGroupDir(dir: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await rmdir(dir);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || attempt >= 100) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** The cgroups a server can make for its sandboxes: v2, or the v1 memory and pids hierarchies it can write. */
export class CgroupHost {
  constructor(
    readonly version: 'v1' | 'v2',
    /** What each sandbox's group limits, for the setup log. */
    readonly controllers: string[],
    private readonly hierarchies: Hierarchy[],
  ) {}

  /** The directories sandbox groups are made in (one per hierarchy). */
  get parents(): string[] {
    return this.hierarchies.map((hierarchy) => hierarchy.parent);
  }

  async create(sandboxId: string, limits: CgroupLimits): Promise<SandboxCgroup> {
    const name = `${GROUP_PREFIX}${process.pid}-${sandboxId}`;
    const dirs: string[] = [];
    try {
      for (const hierarchy of this.hierarchies) {
        const dir = path.join(hierarchy.parent, name);
        await mkdir(dir);
        dirs.push(dir);
        for (const { file, value, optional } of hierarchy.limitFiles(limits)) {
          await writeFile(path.join(dir, file), value).catch((error: unknown) => {
            if (!optional) throw error;
          });
        }
      }
    } catch (error) {
      await Promise.all(dirs.map((dir) => rmdir(dir).catch(() => undefined)));
      throw error;
    }
    return new SandboxCgroup(dirs, this.version);
  }

  /** Removes the groups of servers that are gone (killing anything still in them). */
  async removeOrphans(): Promise<number> {
    let removed = 0;
    for (const { parent } of this.hierarchies) {
      const entries = await readdir(parent).catch(() => [] as string[]);
      for (const entry of entries) {
        const owner = new RegExp(`^${GROUP_PREFIX}(\\d+)-`).exec(entry);
        if (!owner || Number(owner[1]) === process.pid || isAlive(Number(owner[1]))) continue;
        const group = new SandboxCgroup([path.join(parent, entry)], this.version);
        if (
          await group.remove().then(
            () => true,
            () => false,
          )
        )
          removed++;
      }
    }
    return removed;
  }
}

interface MountInfo {
  root: string;
  mountPoint: string;
  fsType: string;
  superOptions: string[];
}

/** mountinfo escapes spaces and other characters as \ooo. */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

function parseMountInfo(text: string): MountInfo[] {
  return text
    .split('\n')
    .filter(Boolean)
    .flatMap((line) => {
      const fields = line.split(' ');
      const separator = fields.indexOf('-');
      if (separator < 6) return [];
      return [
        {
          root: unescapeMountField(fields[3]!),
          mountPoint: unescapeMountField(fields[4]!),
          fsType: fields[separator + 1]!,
          superOptions: (fields[separator + 3] ?? '').split(','),
        },
      ];
    });
}

/** The directory of `cgroupPath` (as /proc/self/cgroup gives it) under a mount of its hierarchy, or null. */
function cgroupDir(mount: MountInfo, cgroupPath: string): string | null {
  const rel = path.posix.relative(mount.root, cgroupPath);
  if (rel.startsWith('..')) return null;
  return path.join(mount.mountPoint, rel);
}

async function readList(file: string): Promise<string[]> {
  return (await readFile(file, 'utf8')).split(/\s+/).filter(Boolean);
}

/** Creates and removes a group with limits, as `create` will: writable cgroupfs is not the same as usable. */
async function tryHierarchy(version: 'v1' | 'v2', hierarchy: Hierarchy): Promise<string | null> {
  const probe = new CgroupHost(version, [], [hierarchy]);
  try {
    const group = await probe.create(`probe-${randomBytes(4).toString('hex')}`, { memoryBytes: 64 * 1024 * 1024, pids: 64 });
    await group.remove();
    return null;
  } catch (error) {
    return `${hierarchy.parent}: ${(error as Error).message}`;
  }
}

const v1Limits: Record<'memory' | 'pids', Hierarchy['limitFiles']> = {
  memory: (limits) => [
    { file: 'memory.limit_in_bytes', value: String(limits.memoryBytes) },
    // Memory plus swap: without it, a sandbox over its limit would swap instead of being stopped.
    { file: 'memory.memsw.limit_in_bytes', value: String(limits.memoryBytes), optional: true },
  ],
  pids: (limits) => [{ file: 'pids.max', value: String(limits.pids) }],
};

const v2Limits: Hierarchy['limitFiles'] = (limits) => [
  { file: 'memory.max', value: String(limits.memoryBytes) },
  { file: 'memory.swap.max', value: '0', optional: true },
  { file: 'pids.max', value: String(limits.pids) },
];

/**
 * cgroup v2 allows no processes in a (non-root) group that hands controllers to its children, so the server first
 * moves itself into a leaf of its own, when it is alone in its group; then sandbox groups are its siblings.
 */
async function setUpV2(dir: string, isRoot: boolean): Promise<Hierarchy | string> {
  const enabled = await readList(path.join(dir, 'cgroup.subtree_control')).catch(() => null);
  if (enabled === null) return `cannot read ${dir}/cgroup.subtree_control`;
  if (!(enabled.includes('memory') && enabled.includes('pids'))) {
    if (!isRoot) {
      const members = (await readList(path.join(dir, 'cgroup.procs')).catch(() => [])).map(Number);
      const others = members.filter((pid) => pid !== process.pid);
      if (others.length > 0) return `${dir} holds ${others.length} other process(es) besides the server, so it cannot have child groups`;
      const leaf = path.join(dir, `${GROUP_PREFIX}${process.pid}-server`);
      try {
        await mkdir(leaf).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== 'EEXIST') throw error;
        });
        await writeFile(path.join(leaf, 'cgroup.procs'), String(process.pid));
      } catch (error) {
        return `cannot move the server into ${leaf}: ${(error as Error).message}`;
      }
    }
    try {
      await writeFile(path.join(dir, 'cgroup.subtree_control'), '+memory +pids');
    } catch (error) {
      return `cannot enable memory and pids in ${dir}: ${(error as Error).message}`;
    }
  }
  return { parent: dir, limitFiles: v2Limits };
}

/** What cgroups this server can give its sandboxes; `problem` says why none (then only prlimit limits apply). */
export async function probeCgroups(): Promise<{ host: CgroupHost } | { problem: string }> {
  const [selfCgroup, mountInfo] = await Promise.all([
    readFile('/proc/self/cgroup', 'utf8').catch(() => ''),
    readFile('/proc/self/mountinfo', 'utf8').catch(() => ''),
  ]);
  const mounts = parseMountInfo(mountInfo);
  const memberships = selfCgroup
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [, , controllers = '', cgroupPath = '/'] = /^(\d+):([^:]*):(.*)$/.exec(line) ?? [];
      return { controllers: controllers.split(','), cgroupPath };
    });
  const problems: string[] = [];

  const unified = memberships.find((m) => m.controllers.length === 1 && m.controllers[0] === '');
  const v2Mount = mounts.find((m) => m.fsType === 'cgroup2');
  if (unified && v2Mount) {
    const dir = cgroupDir(v2Mount, unified.cgroupPath);
    const available = dir ? await readList(path.join(dir, 'cgroup.controllers')).catch(() => []) : [];
    if (dir && available.includes('memory') && available.includes('pids')) {
      const hierarchy = await setUpV2(dir, unified.cgroupPath === '/' && v2Mount.root === '/');
      const problem = typeof hierarchy === 'string' ? hierarchy : await tryHierarchy('v2', hierarchy);
      if (problem === null) return { host: new CgroupHost('v2', ['memory', 'pids'], [hierarchy as Hierarchy]) };
      problems.push(`cgroup v2: ${problem}`);
    } else {
      problems.push('cgroup v2: the memory and pids controllers are not available in the server’s cgroup');
    }
  }

  const v1: Hierarchy[] = [];
  const controllers: string[] = [];
  for (const controller of ['memory', 'pids'] as const) {
    const mount = mounts.find((m) => m.fsType === 'cgroup' && m.superOptions.includes(controller));
    const membership = memberships.find((m) => m.controllers.includes(controller));
    const dir = mount && membership ? cgroupDir(mount, membership.cgroupPath) : null;
    if (!dir) continue;
    const hierarchy = { parent: dir, limitFiles: v1Limits[controller] };
    const problem = await access(dir).then(
      () => tryHierarchy('v1', hierarchy),
      () => `${dir} is not reachable`,
    );
    if (problem === null) {
      v1.push(hierarchy);
      controllers.push(controller);
    } else problems.push(`cgroup v1 ${controller}: ${problem}`);
  }
  if (v1.length > 0) return { host: new CgroupHost('v1', controllers, v1) };
  return { problem: problems.join('; ') || 'no cgroup hierarchy with the memory or pids controller is mounted' };
}
