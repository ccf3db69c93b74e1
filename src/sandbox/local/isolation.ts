import os from 'node:os';
import path from 'node:path';
import { HARBOR_REWARD_DIR, HARBOR_TESTS_DIR, type SandboxBinary } from '../types.js';
import type { HostCapabilities } from './host-probe.js';
import { enterNetworkArgs } from './netns.js';
import {
  accountFileArgs,
  isDirectory,
  isUnder,
  mountPointParentArgs,
  readOnlyAfterMountArgs,
  readOnlyRootArgs,
  scratchMountArgs,
  type SandboxAccount,
} from './rootfs.js';
import { writeSeccompFilter } from './seccomp.js';
import type { ResourceLimits, SandboxNetwork } from './settings.js';

/** The fd bubblewrap reads the seccomp filter from: the first of `inheritedFiles()`. */
const SECCOMP_FD = 3;
/** Each sandbox's copy of the filter, in its host directory (gone with the sandbox, out of every sandbox's sight). */
const SECCOMP_FILE = 'seccomp.bpf';

/**
 * The shared unprivileged account sandbox processes run as when the server is root but no uids of their own could be
 * allocated (see uids.ts); normally each sandbox gets a pair of uids of its own.
 */
export const SANDBOX_UID = 65534;

/** Host directories that make up one local sandbox. */
export interface SandboxDirs {
  root: string;
  home: string;
  tmp: string;
  /** Where the host serves unix sockets into the sandbox (read-only inside). */
  channel: string;
  /** The verifier's own HOME and /tmp, made by `prepareVerifier()`; never visible to the agent. */
  verifierHome: string;
  verifierTmp: string;
  /** Where verifier commands write their reward (under `home`, made from the host side by `prepareVerifier()`). */
  reward: string;
  /** What verifier commands alone see at `HARBOR_TESTS_DIR` (bubblewrap only), made afresh by `prepareVerifier()`. */
  tests: string;
  /** Extra directories of the sandbox's root user (`LocalProviderOptions.rootUser`): where each lives on the host. */
  rootOwned?: { path: string; host: string }[];
  /**
   * The host file holding the network namespace every command of the sandbox shares (netns.ts), instead of one
   * namespace per command: `LocalProviderOptions.sharedNetwork`, stand-ins only. bubblewrap only.
   */
  network?: string;
}

/** A sandbox's own pair of uids (gid = uid), unique on this host while the sandbox lives. */
export interface SandboxUids {
  agent: number;
  verifier: number;
}

/** Who runs one command, and what its first process joins before anything else runs; built by the sandbox per command. */
export interface LaunchIdentity {
  /** `root`: a stand-in's root user (`LocalSandbox.startAsRoot`), never used when serving. */
  role: 'agent' | 'verifier' | 'root';
  /** The uid (= gid) the command runs as; null when it keeps the server's (no privilege drop). */
  uid: number | null;
  /** The sandbox's uids, e.g. for /etc/passwd (`user` = agent, `verifier` = verifier); null without a privilege drop. */
  uids: SandboxUids | null;
  /** cgroup.procs files (one per cgroup v1 hierarchy, or the v2 one) the command joins; empty without cgroups. */
  cgroupProcs: string[];
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
  /** Whether bubblewrap loads the seccomp filter (seccomp.ts) into every sandbox process. */
  seccomp: boolean;
}

/** How processes of a local sandbox are isolated from the host, and where its paths live on the host. */
export interface Isolation {
  readonly name: 'bubblewrap' | 'none';
  /** Whether sandbox processes run under a dedicated unprivileged uid (so files must be handed to it). */
  readonly dropsPrivileges: boolean;
  homeDir(dirs: SandboxDirs): string;
  tmpDir(dirs: SandboxDirs): string;
  /** HOME and TMPDIR of verifier commands. */
  verifierHomeDir(dirs: SandboxDirs): string;
  verifierTmpDir(dirs: SandboxDirs): string;
  /** `Sandbox.verifierFilesDir`: Harbor's /tests for verifier commands, or null where commands see the host's root. */
  verifierFilesDir(): string | null;
  resourcesDir(): string;
  channelDir(dirs: SandboxDirs): string;
  /** Path inside the sandbox of a host binary, or null when none was configured. */
  binaryPath(binary: SandboxBinary): string | null;
  /** Host files the launched wrapper reads as fds 3, 4, … (bubblewrap's seccomp filter); opened afresh per launch. */
  inheritedFiles(dirs: SandboxDirs): string[];
  /** Full host argv that runs `argv` inside the sandbox as `identity`. */
  wrap(argv: string[], dirs: SandboxDirs, cwd: string, identity: LaunchIdentity): string[];
  /** Host path for an absolute sandbox path in the sandbox's writable area, or null when it is outside. */
  toHostPath(sandboxPath: string, dirs: SandboxDirs): string | null;
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

function privilegeDropArgs(host: HostCapabilities, uid: number, extra: string[] = []): string[] {
  return [host.setpriv!, `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--no-new-privs', ...extra, '--'];
}

/**
 * Runs first, as the server's user, before bwrap or setpriv: makes the kernel's OOM killer pick sandbox processes
 * before anything else (a root server's write also sets the floor the sandbox cannot lower), and joins the
 * sandbox's cgroups, so that everything the command starts is counted against the sandbox's memory and pids limits.
 */
const LAUNCHER_SCRIPT =
  'echo 1000 > /proc/self/oom_score_adj || exit 125; ' +
  'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"';

function launcherArgs(identity: LaunchIdentity): string[] {
  return ['/bin/sh', '-c', LAUNCHER_SCRIPT, 'sh', ...identity.cgroupProcs, '--'];
}

/** The tail every isolation ends with: the uid drop (with `extra` setpriv options) and the resource limits. */
function dropAndLimitArgs(host: HostCapabilities, policy: IsolationPolicy, identity: LaunchIdentity, extra: string[] = []): string[] {
  const drop =
    identity.uid !== null ? privilegeDropArgs(host, identity.uid, extra) : extra.length > 0 ? [host.setpriv!, ...extra, '--'] : [];
  return [...drop, ...limitArgs(host, policy.limits, identity.uid !== null)];
}

const SANDBOX_HOME = '/home/user';
/** Verifier commands only: their own HOME, and the reward directory at Harbor's path too. */
const VERIFIER_HOME = '/home/verifier';
const SANDBOX_RUN = '/run/opencode-env';
const SANDBOX_RESOURCES = `${SANDBOX_RUN}/resources`;
const SANDBOX_CHANNEL = `${SANDBOX_RUN}/channel`;
const SANDBOX_BIN = `${SANDBOX_RUN}/bin`;
/**
 * What a root command keeps of root's power: enough to administer the sandbox's files and processes (chown, read and
 * write any file, signal any uid), nothing that changes mounts, namespaces or the kernel. bubblewrap sets no_new_privs,
 * so nothing it executes gets more.
 */
const ROOT_CAPABILITIES = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL'];

/**
 * bubblewrap: an allow-list of read-only host directories (rootfs.ts), private writable home and /tmp, own pid/ipc/uts
 * (and by default net) namespaces, and a seccomp filter (seccomp.ts).
 */
export class BubblewrapIsolation implements Isolation {
  readonly name = 'bubblewrap';
  readonly dropsPrivileges: boolean;
  /** The allow-listed host directories, bound read-only: the same for every command. */
  private readonly readOnlyRoot: string[];

  constructor(
    private readonly bwrap: string,
    private readonly host: HostCapabilities,
    private readonly policy: IsolationPolicy,
    dropPrivileges: boolean,
  ) {
    this.dropsPrivileges = dropPrivileges && canDropPrivileges(host);
    this.readOnlyRoot = readOnlyRootArgs({
      runtimePaths: policy.runtimePaths,
      hiddenPaths: [os.homedir(), ...policy.hiddenPaths],
    });
  }

  inheritedFiles(dirs: SandboxDirs): string[] {
    if (!this.policy.seccomp) return [];
    const filter = path.join(dirs.root, SECCOMP_FILE);
    writeSeccompFilter(filter);
    return [filter];
  }

  /** The users of the sandbox's /etc/passwd: its agent and verifier uids, or the server's own uid when it keeps it. */
  private accounts(identity: LaunchIdentity): SandboxAccount[] {
    if (!identity.uids) return [{ name: 'user', uid: identity.uid ?? process.getuid?.() ?? SANDBOX_UID, home: SANDBOX_HOME }];
    return [
      { name: 'user', uid: identity.uids.agent, home: SANDBOX_HOME },
      { name: 'verifier', uid: identity.uids.verifier, home: VERIFIER_HOME },
    ];
  }

  homeDir(): string {
    return SANDBOX_HOME;
  }

  tmpDir(): string {
    return '/tmp';
  }

  verifierHomeDir(): string {
    return VERIFIER_HOME;
  }

  verifierTmpDir(): string {
    return '/tmp';
  }

  verifierFilesDir(): string {
    return HARBOR_TESTS_DIR;
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

  wrap(argv: string[], dirs: SandboxDirs, cwd: string, identity: LaunchIdentity): string[] {
    const verifier = identity.role === 'verifier';
    const root = identity.role === 'root';
    // A root command shares the host's pid namespace only where the sandbox's uids are its own: then it can see and
    // signal the sandbox's processes by uid (`pkill -u user`), as root in a VM can, and `user` names no one else's.
    const ownPidNamespace = !root || identity.uids === null || identity.uids.agent === SANDBOX_UID;
    const rootCapabilities =
      root && process.getuid?.() === 0 ? ['--cap-drop', 'ALL', ...ROOT_CAPABILITIES.flatMap((c) => ['--cap-add', c])] : [];
    // prettier-ignore
    const args = [
      ...launcherArgs(identity),
      // Joined as the server's user (root), before bwrap and the privilege drop: the sandbox cannot leave it.
      ...(dirs.network ? enterNetworkArgs(dirs.network) : []),
      this.bwrap,
      '--die-with-parent',
      '--new-session',
      ...(ownPidNamespace ? ['--unshare-pid'] : []),
      ...rootCapabilities,
      '--unshare-ipc',
      '--unshare-uts',
      '--unshare-cgroup-try',
      ...(this.policy.network === 'isolated' && !dirs.network ? ['--unshare-net'] : []),
      '--hostname', 'sandbox',
      ...(this.policy.seccomp ? ['--seccomp', String(SECCOMP_FD)] : []),
      ...this.readOnlyRoot,
      ...accountFileArgs(path.join(dirs.root, 'etc'), this.accounts(identity)),
      '--dev', '/dev',
      '--proc', '/proc',
      ...scratchMountArgs(),
    ];
    if (this.policy.network === 'host' && isDirectory('/run/systemd/resolve')) {
      // /etc/resolv.conf often points here; keep name resolution working when the network is shared.
      const run = [{ path: '/run', showsHost: false }];
      args.push(...mountPointParentArgs('/run/systemd/resolve', run), '--ro-bind', '/run/systemd/resolve', '/run/systemd/resolve');
    }
    // The parents bubblewrap would make untraversable (0700): /home, and /logs for the verifier's reward directory.
    args.push(...mountPointParentArgs(SANDBOX_HOME), ...(verifier ? mountPointParentArgs(HARBOR_REWARD_DIR) : []));
    // prettier-ignore
    args.push(
      '--bind', dirs.home, SANDBOX_HOME,
      '--bind', verifier ? dirs.verifierTmp : dirs.tmp, '/tmp',
      '--perms', '0755', '--dir', SANDBOX_RUN,
      '--ro-bind', this.policy.resourcesDir, SANDBOX_RESOURCES,
      '--ro-bind', dirs.channel, SANDBOX_CHANNEL,
    );
    if (Object.keys(this.policy.binaries).length > 0) args.push('--perms', '0755', '--dir', SANDBOX_BIN);
    for (const [binary, hostBinary] of Object.entries(this.policy.binaries)) {
      args.push('--ro-bind', hostBinary, `${SANDBOX_BIN}/${binary}`);
    }
    for (const dir of dirs.rootOwned ?? []) args.push(...mountPointParentArgs(dir.path), '--bind', dir.host, dir.path);
    if (verifier) {
      args.push('--bind', dirs.verifierHome, VERIFIER_HOME);
      // Harbor's paths too (the allow-listed root is bwrap's own, so /logs and /tests can be made there); the agent's
      // commands have neither.
      args.push('--bind', dirs.reward, HARBOR_REWARD_DIR, '--bind', dirs.tests, HARBOR_TESTS_DIR);
    }
    // After every mount point bwrap had to make: then the root it built and /run become read-only.
    args.push(...readOnlyAfterMountArgs());
    args.push('--chdir', cwd, '--', ...dropAndLimitArgs(this.host, this.policy, identity), ...argv);
    return args;
  }

  toHostPath(sandboxPath: string, dirs: SandboxDirs): string | null {
    const p = path.posix.resolve(sandboxPath);
    if (isUnder(p, SANDBOX_HOME)) return path.join(dirs.home, path.posix.relative(SANDBOX_HOME, p));
    if (isUnder(p, '/tmp')) return path.join(dirs.tmp, path.posix.relative('/tmp', p));
    if (isUnder(p, HARBOR_TESTS_DIR)) return path.join(dirs.tests, path.posix.relative(HARBOR_TESTS_DIR, p));
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

  verifierHomeDir(dirs: SandboxDirs): string {
    return dirs.verifierHome;
  }

  verifierTmpDir(dirs: SandboxDirs): string {
    return dirs.verifierTmp;
  }

  /** Commands see the host's root, where /tests and /logs are not the sandbox's to make. */
  verifierFilesDir(): null {
    return null;
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

  inheritedFiles(): string[] {
    return [];
  }

  wrap(argv: string[], _dirs: SandboxDirs, _cwd: string, identity: LaunchIdentity): string[] {
    // Without a pid namespace nothing reaps the tree when we die; the parent-death signal is the next best thing.
    const pdeathsig = this.host.setprivHasPdeathsig ? ['--pdeathsig', 'KILL'] : [];
    return [...launcherArgs(identity), ...dropAndLimitArgs(this.host, this.policy, identity, pdeathsig), ...argv];
  }

  toHostPath(sandboxPath: string, dirs: SandboxDirs): string | null {
    const p = path.resolve(sandboxPath);
    return isUnder(p, dirs.home) || isUnder(p, dirs.tmp) ? p : null;
  }
}
