import { statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { SandboxBinary } from '../types.js';
import type { HostCapabilities } from './host-probe.js';
import type { ResourceLimits, SandboxNetwork } from './settings.js';

/** The unprivileged account sandbox processes run as when the server itself runs as root. */
export const SANDBOX_UID = 65534;

/** Host directories that make up one local sandbox. */
export interface SandboxDirs {
  root: string;
  home: string;
  tmp: string;
  /** Where the host serves unix sockets into the sandbox (read-only inside). */
  channel: string;
}

export interface IsolationPolicy {
  network: SandboxNetwork;
  limits: ResourceLimits;
  /** The project's resources/ directory on the host. */
  resourcesDir: string;
  /** Interpreter prefixes to keep visible even when they sit under a hidden directory (e.g. pyenv in ~). */
  runtimePaths: string[];
  /** Host directories sandboxes must not see (the server's home, the sandbox root with other sandboxes). */
  hiddenPaths: string[];
  /** Host binaries made available inside sandboxes. */
  binaries: Partial<Record<SandboxBinary, string>>;
}

/** How processes of a local sandbox are isolated from the host, and where its paths live on the host. */
export interface Isolation {
  readonly name: 'bubblewrap' | 'none';
  /** Whether sandbox processes run under a dedicated unprivileged uid (so files must be handed to it). */
  readonly dropsPrivileges: boolean;
  homeDir(dirs: SandboxDirs): string;
  tmpDir(dirs: SandboxDirs): string;
  resourcesDir(): string;
  channelDir(dirs: SandboxDirs): string;
  /** Path inside the sandbox of a host binary, or null when none was configured. */
  binaryPath(binary: SandboxBinary): string | null;
  /** Full host argv that runs `argv` inside the sandbox. */
  wrap(argv: string[], dirs: SandboxDirs, cwd: string): string[];
  /** Host path for an absolute sandbox path in the sandbox's writable area, or null when it is outside. */
  toHostPath(sandboxPath: string, dirs: SandboxDirs): string | null;
}

function isUnder(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function limitArgs(host: HostCapabilities, limits: ResourceLimits, dedicatedUid: boolean): string[] {
  if (!host.prlimit) return [];
  const args = [host.prlimit, `--fsize=${limits.fileSizeBytes}`, `--cpu=${limits.cpuSeconds}`, '--core=0'];
  // RLIMIT_NPROC counts every process of the uid machine-wide, so it is only meaningful for a uid of our own.
  if (dedicatedUid) args.push(`--nproc=${limits.processes}`);
  return [...args, '--'];
}

/** Whether sandbox processes can be moved to an unprivileged uid at all: only a root server can, with setpriv. */
export function canDropPrivileges(host: HostCapabilities): boolean {
  return host.setpriv !== null && process.getuid?.() === 0;
}

function privilegeDropArgs(host: HostCapabilities, extra: string[] = []): string[] {
  return [host.setpriv!, `--reuid=${SANDBOX_UID}`, `--regid=${SANDBOX_UID}`, '--clear-groups', '--no-new-privs', ...extra, '--'];
}

const SANDBOX_HOME = '/home/user';
const SANDBOX_RUN = '/run/opencode-env';
const SANDBOX_RESOURCES = `${SANDBOX_RUN}/resources`;
const SANDBOX_CHANNEL = `${SANDBOX_RUN}/channel`;
const SANDBOX_BIN = `${SANDBOX_RUN}/bin`;

/** bubblewrap: read-only host, private writable home and /tmp, own pid/ipc/uts (and by default net) namespaces. */
export class BubblewrapIsolation implements Isolation {
  readonly name = 'bubblewrap';
  readonly dropsPrivileges: boolean;

  constructor(
    private readonly bwrap: string,
    private readonly host: HostCapabilities,
    private readonly policy: IsolationPolicy,
    dropPrivileges: boolean,
  ) {
    this.dropsPrivileges = dropPrivileges && canDropPrivileges(host);
  }

  homeDir(): string {
    return SANDBOX_HOME;
  }

  tmpDir(): string {
    return '/tmp';
  }

  resourcesDir(): string {
    return SANDBOX_RESOURCES;
  }

  channelDir(): string {
    return SANDBOX_CHANNEL;
  }

  binaryPath(binary: SandboxBinary): string | null {
    return this.policy.binaries[binary] ? `${SANDBOX_BIN}/${binary}` : null;
  }

  wrap(argv: string[], dirs: SandboxDirs, cwd: string): string[] {
    // prettier-ignore
    const args = [
      this.bwrap,
      '--die-with-parent',
      '--new-session',
      '--unshare-pid',
      '--unshare-ipc',
      '--unshare-uts',
      '--unshare-cgroup-try',
      ...(this.policy.network === 'isolated' ? ['--unshare-net'] : []),
      '--hostname', 'sandbox',
      '--ro-bind', '/', '/',
      '--dev', '/dev',
      '--proc', '/proc',
      '--perms', '01777', '--tmpfs', '/dev/shm',
      '--tmpfs', '/run',
    ];
    if (this.policy.network === 'host' && isDirectory('/run/systemd/resolve')) {
      // /etc/resolv.conf often points here; keep name resolution working when the network is shared.
      args.push('--ro-bind', '/run/systemd/resolve', '/run/systemd/resolve');
    }
    const hidden = new Set(['/home', '/root', '/var/tmp', os.homedir(), ...this.policy.hiddenPaths].map((p) => path.resolve(p)));
    for (const dir of [...hidden].sort()) {
      if (dir !== '/' && isDirectory(dir)) args.push('--tmpfs', dir);
    }
    for (const runtime of this.policy.runtimePaths) {
      if ([...hidden].some((h) => isUnder(runtime, h)) && isDirectory(runtime)) {
        args.push('--perms', '0755', '--dir', path.dirname(runtime), '--ro-bind', runtime, runtime);
      }
    }
    // prettier-ignore
    args.push(
      '--bind', dirs.home, SANDBOX_HOME,
      '--bind', dirs.tmp, '/tmp',
      '--perms', '0755', '--dir', SANDBOX_RUN,
      '--ro-bind', this.policy.resourcesDir, SANDBOX_RESOURCES,
      '--ro-bind', dirs.channel, SANDBOX_CHANNEL,
    );
    if (Object.keys(this.policy.binaries).length > 0) args.push('--perms', '0755', '--dir', SANDBOX_BIN);
    for (const [binary, hostBinary] of Object.entries(this.policy.binaries)) {
      args.push('--ro-bind', hostBinary, `${SANDBOX_BIN}/${binary}`);
    }
    args.push(
      '--chdir',
      cwd,
      '--',
      ...(this.dropsPrivileges ? privilegeDropArgs(this.host) : []),
      ...limitArgs(this.host, this.policy.limits, this.dropsPrivileges),
      ...argv,
    );
    return args;
  }

  toHostPath(sandboxPath: string, dirs: SandboxDirs): string | null {
    const p = path.posix.resolve(sandboxPath);
    if (isUnder(p, SANDBOX_HOME)) return path.join(dirs.home, path.posix.relative(SANDBOX_HOME, p));
    if (isUnder(p, '/tmp')) return path.join(dirs.tmp, path.posix.relative('/tmp', p));
    return null;
  }
}

/** No isolation beyond an unprivileged uid (when root) and resource limits: paths are host paths. */
export class PlainProcessIsolation implements Isolation {
  readonly name = 'none';
  readonly dropsPrivileges: boolean;

  constructor(
    private readonly host: HostCapabilities,
    private readonly policy: IsolationPolicy,
    dropPrivileges: boolean,
  ) {
    this.dropsPrivileges = dropPrivileges && canDropPrivileges(host);
  }

  homeDir(dirs: SandboxDirs): string {
    return dirs.home;
  }

  tmpDir(dirs: SandboxDirs): string {
    return dirs.tmp;
  }

  resourcesDir(): string {
    return this.policy.resourcesDir;
  }

  channelDir(dirs: SandboxDirs): string {
    return dirs.channel;
  }

  binaryPath(binary: SandboxBinary): string | null {
    return this.policy.binaries[binary] ?? null;
  }

  wrap(argv: string[]): string[] {
    // Without a pid namespace nothing reaps the tree when we die; the parent-death signal is the next best thing.
    const pdeathsig = this.host.setprivHasPdeathsig ? ['--pdeathsig', 'KILL'] : [];
    let wrapper: string[] = [];
    if (this.dropsPrivileges) wrapper = privilegeDropArgs(this.host, pdeathsig);
    else if (pdeathsig.length > 0) wrapper = [this.host.setpriv!, ...pdeathsig, '--'];
    return [...wrapper, ...limitArgs(this.host, this.policy.limits, this.dropsPrivileges), ...argv];
  }

  toHostPath(sandboxPath: string, dirs: SandboxDirs): string | null {
    const p = path.resolve(sandboxPath);
    return isUnder(p, dirs.home) || isUnder(p, dirs.tmp) ? p : null;
  }
}
