import { chmodSync, existsSync, lstatSync, mkdirSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The root filesystem of a bubblewrap sandbox as an allow-list: the system directories a toolchain needs
 * (read-only), the Python install, and the sandbox's own directories. Everything else on the host (other
 * projects, /srv, /mnt, /home, /root, the server's data) is simply absent.
 */

/** Bound read-only when the host has them; as symlinks where the host has symlinks (merged /usr). */
const SYSTEM_PATHS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/etc'];

/**
 * The size of each RAM-backed tmpfs bubblewrap makes for the sandbox (/dev/shm, /var/tmp, /run, /var). A cap, not
 * a reservation: the kernel's default is half the host's RAM per mount. 64 MiB is plenty for the POSIX shared
 * memory of test suites and multiprocessing queues; bigger scratch data belongs in /tmp or the home.
 */
export const TMPFS_SIZE_BYTES = 64 * 1024 * 1024;

export function isUnder(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

export function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** What the host has at `p`: a symlink (with its target), a directory, or nothing usable. */
function hostEntry(p: string): { symlink: string } | 'directory' | null {
  try {
    if (lstatSync(p).isSymbolicLink()) return { symlink: readlinkSync(p) };
  } catch {
    return null;
  }
  return isDirectory(p) ? 'directory' : null;
}

const depth = (p: string) => p.split('/').filter(Boolean).length;

export interface RootfsPaths {
  /** Interpreter prefixes (the Python install, a venv and its base), bound read-only at their own paths. */
  runtimePaths: string[];
  /** Host directories never to show, even where they sit under a bound directory (the sandbox root, the data dir). */
  hiddenPaths: string[];
}

/**
 * bubblewrap arguments for the read-only part of the root: system directories, then runtime paths and hidden
 * paths, shallowest first so a deeper mount lands on top of a shallower one. Computed once: the host's layout
 * does not change while the server runs.
 */
export function readOnlyRootArgs({ runtimePaths, hiddenPaths }: RootfsPaths): string[] {
  const args: string[] = [];
  const systemDirs: string[] = [];
  for (const p of SYSTEM_PATHS) {
    const entry = hostEntry(p);
    if (entry === 'directory') {
      args.push('--ro-bind', p, p);
      systemDirs.push(p);
    } else if (entry) {
      args.push('--symlink', entry.symlink, p);
    }
  }
  const hidden = [...new Set(hiddenPaths.map((p) => path.resolve(p)))].filter((p) => p !== '/' && isDirectory(p));
  const alreadyVisible = (p: string) => systemDirs.some((s) => isUnder(p, s)) && !hidden.some((h) => isUnder(p, h));
  const runtimes = [...new Set(runtimePaths.map((p) => path.resolve(p)))].filter((p) => isDirectory(p) && !alreadyVisible(p));
  const bound = [...systemDirs, ...runtimes];
  // A hidden directory needs covering only where something bound would show it; a runtime path always stays visible.
  const hides = hidden.filter((h) => bound.some((b) => isUnder(h, b) && h !== b) && !runtimes.includes(h));
  const mounts = [...runtimes.map((p) => ({ path: p, showsHost: true })), ...hides.map((p) => ({ path: p, showsHost: false }))];
  mounts.sort((a, b) => depth(a.path) - depth(b.path));
  const layers: Layer[] = systemDirs.map((p) => ({ path: p, showsHost: true }));
  for (const mount of mounts) {
    if (mount.showsHost) args.push(...mountPointParentArgs(mount.path, layers));
    args.push(...(mount.showsHost ? ['--ro-bind', mount.path, mount.path] : ['--tmpfs', mount.path]));
    layers.push(mount);
  }
  return args;
}

/** A directory mounted in the sandbox: a bind that shows the host's tree under it, or an empty tmpfs or new directory. */
interface Layer {
  path: string;
  showsHost: boolean;
}

/**
 * bubblewrap makes the missing parents of a mount point with mode 0700, which no sandbox user could traverse, so
 * these arguments make them 0755 first. `layers` lists what is mounted so far (the new directories are added to it).
 */
export function mountPointParentArgs(mountPoint: string, layers: Layer[] = []): string[] {
  const exists = (p: string) => {
    const deepest = layers.filter((l) => isUnder(p, l.path)).sort((a, b) => depth(b.path) - depth(a.path))[0];
    return deepest !== undefined && (deepest.showsHost || deepest.path === p);
  };
  const args: string[] = [];
  const parts = mountPoint.split('/').filter(Boolean);
  for (let i = 1; i < parts.length; i++) {
    const parent = `/${parts.slice(0, i).join('/')}`;
    if (exists(parent)) continue;
    args.push('--perms', '0755', '--dir', parent);
    layers.push({ path: parent, showsHost: false });
  }
  return args;
}

/**
 * bubblewrap arguments for the size-capped RAM-backed mounts: a writable /dev/shm and /var/tmp, and /run and a
 * read-only /var to hold them (/run is made read-only at the end, once everything under it is mounted).
 */
export function scratchMountArgs(): string[] {
  const size = String(TMPFS_SIZE_BYTES);
  // prettier-ignore
  return [
    '--perms', '01777', '--size', size, '--tmpfs', '/dev/shm',
    '--perms', '0755', '--size', size, '--tmpfs', '/run',
    '--perms', '0755', '--size', size, '--tmpfs', '/var',
    '--perms', '01777', '--size', size, '--tmpfs', '/var/tmp',
    '--symlink', '../run', '/var/run',
    '--remount-ro', '/var',
  ];
}

/** The last arguments of the filesystem setup: nothing may write where bwrap made mount points (a sandbox user may own them). */
export function readOnlyAfterMountArgs(): string[] {
  return ['--remount-ro', '/run', '--remount-ro', '/'];
}

/** A user of the sandbox's own /etc/passwd and /etc/group (gid = uid). */
export interface SandboxAccount {
  name: string;
  uid: number;
  home: string;
}

/** System accounts programs expect to resolve, listed after the sandbox's own unless those take their ids. */
const SYSTEM_ACCOUNTS = [
  { name: 'root', group: 'root', uid: 0, home: '/root' },
  { name: 'nobody', group: 'nogroup', uid: 65534, home: '/nonexistent' },
];

export function passwdFile(accounts: SandboxAccount[]): string {
  const taken = new Set(accounts.map((a) => a.uid));
  const lines = accounts.map((a) => `${a.name}:x:${a.uid}:${a.uid}:${a.name}:${a.home}:/bin/bash`);
  for (const s of SYSTEM_ACCOUNTS) if (!taken.has(s.uid)) lines.push(`${s.name}:x:${s.uid}:${s.uid}:${s.name}:${s.home}:/usr/sbin/nologin`);
  return `${lines.join('\n')}\n`;
}

export function groupFile(accounts: SandboxAccount[]): string {
  const taken = new Set(accounts.map((a) => a.uid));
  const lines = accounts.map((a) => `${a.name}:x:${a.uid}:`);
  for (const s of SYSTEM_ACCOUNTS) if (!taken.has(s.uid)) lines.push(`${s.group}:x:${s.uid}:`);
  return `${lines.join('\n')}\n`;
}

/**
 * Writes the sandbox's passwd and group files into `dir` (a host directory of this sandbox) unless they exist,
 * and returns the bubblewrap arguments that show them as /etc/passwd and /etc/group. A sandbox's accounts never
 * change, so the files are written by its first command only.
 */
export function accountFileArgs(dir: string, accounts: SandboxAccount[]): string[] {
  const passwd = path.join(dir, 'passwd');
  const group = path.join(dir, 'group');
  if (!existsSync(passwd) || !existsSync(group)) {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    writeFileSync(group, groupFile(accounts));
    writeFileSync(passwd, passwdFile(accounts));
    // Readable by every sandbox user whatever the server's umask.
    for (const file of [group, passwd]) chmodSync(file, 0o644);
  }
  return ['--ro-bind', passwd, '/etc/passwd', '--ro-bind', group, '/etc/group'];
}
