import { randomBytes } from 'node:crypto';
import { chmod, lstat, symlink } from 'node:fs/promises';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { SandboxError } from '../../errors.js';
import { findProcessesByEnvMarker, killAndWait } from '../../util/process-tree.js';
import { runToCompletion } from '../run-to-completion.js';
import type { CommandResult, FileEntry, LlmChannel, RunOptions, Sandbox, SandboxBinary, SandboxProcess, StartOptions } from '../types.js';
import type { SandboxCgroup } from './cgroups.js';
import type { Isolation, LaunchIdentity, SandboxDirs, SandboxUids } from './isolation.js';
import { openLocalLlmChannel } from './llm-channel.js';
import { LocalProcess } from './local-process.js';
import { handOverTree, listTreeNoFollow, makeDir, readFileNoFollow, removeNoFollow, writeFileNoFollow } from './safe-fs.js';
import { removeNetworkNamespace } from './netns.js';
import { isUnder } from './rootfs.js';
import { unmount } from './tmpfs.js';
import { killProcessesOf, type UidLease } from './uids.js';

/** Environment variable naming the sandbox, carried by all of its processes. */
const SANDBOX_MARKER = 'OPENCODE_ENV_SANDBOX_ID';

const SYSTEM_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

export interface LocalSandboxDeps {
  id: string;
  dirs: SandboxDirs;
  isolation: Isolation;
  pythonExecutable: string | null;
  pythonProblem: string | null;
  /** Variables every process gets (the create options' `env`). */
  env: Record<string, string>;
  /** Killed this long after creation, when set. */
  lifetimeMs: number | null;
  /** Called once the sandbox is gone, so its provider can forget it. */
  onKilled: (sandbox: LocalSandbox) => void;
  /**
   * The uids its processes run as: a leased pair of its own, or (root without a lease) the shared SANDBOX_UID for
   * both; null when they keep the server's uid. Without a pair of its own, the verifier is set apart from the agent
   * only by its HOME, /tmp and environment, and by the agent's processes being killed first.
   */
  uids: SandboxUids | null;
  /** Set when `uids` are this sandbox's alone (so every process of theirs is this sandbox's). */
  uidLease: UidLease | null;
  cgroup: SandboxCgroup | null;
  /** The size-capped tmpfs holding its /tmp (and the verifier's), when one was mounted. */
  tmpfsMountPoint: string | null;
  /** Whether `startAsRoot` is allowed (`LocalProviderOptions.rootUser`; stand-ins of remote backends only). */
  rootUser?: boolean;
}

type Role = LaunchIdentity['role'];

export class LocalSandbox implements Sandbox {
  readonly backend = 'local' as const;
  readonly id: string;
  readonly isolation: string;
  readonly homeDir: string;
  readonly workdir: string;
  readonly rewardDir: string;
  readonly verifierFilesDir: string | null;
  private readonly processes = new Set<LocalProcess>();
  private readonly channels = new Set<LlmChannel>();
  private killPromise: Promise<void> | null = null;
  private processCounter = 0;
  private readonly lifetimeTimer: NodeJS.Timeout | null;
  /** Set by `prepareVerifier()`: from then on verifier commands may run, and files the host writes are the verifier's. */
  private verifierReady = false;

  constructor(private readonly deps: LocalSandboxDeps) {
    this.id = deps.id;
    this.isolation = deps.isolation.name;
    this.homeDir = deps.isolation.homeDir(deps.dirs);
    this.workdir = path.posix.join(this.homeDir, 'workdir');
    this.rewardDir = path.posix.join(this.homeDir, 'logs', 'verifier');
    this.verifierFilesDir = deps.isolation.verifierFilesDir();
    // Unref'd: an expiring sandbox must not keep the server alive, and shutdown kills it anyway.
    this.lifetimeTimer = deps.lifetimeMs === null ? null : setTimeout(() => void this.kill(), deps.lifetimeMs).unref();
  }

  get killed(): boolean {
    return this.killPromise !== null;
  }

  private searchPath(): string {
    const pathDirs = [...SYSTEM_PATH];
    if (this.deps.pythonExecutable) {
      const pythonBin = path.dirname(this.deps.pythonExecutable);
      if (!pathDirs.includes(pythonBin)) pathDirs.unshift(pythonBin);
    }
    return pathDirs.join(':');
  }

  private defaultEnv(): Record<string, string> {
    return {
      PATH: this.searchPath(),
      HOME: this.homeDir,
      USER: 'user',
      LOGNAME: 'user',
      SHELL: '/bin/bash',
      LANG: 'C.UTF-8',
      TERM: 'dumb',
      TMPDIR: this.deps.isolation.tmpDir(this.deps.dirs),
      ...this.deps.env,
    };
  }

  /** Nothing of the agent's: not its variables, HOME, /tmp or user site-packages (PYTHONNOUSERSITE). */
  private verifierEnv(): Record<string, string> {
    return {
      PATH: this.searchPath(),
      HOME: this.deps.isolation.verifierHomeDir(this.deps.dirs),
      USER: 'verifier',
      LOGNAME: 'verifier',
      LANG: 'C.UTF-8',
      TERM: 'dumb',
      TMPDIR: this.deps.isolation.verifierTmpDir(this.deps.dirs),
      PYTHONNOUSERSITE: '1',
      ...this.deps.env,
    };
  }

  private identity(role: Role): LaunchIdentity {
    return {
      role,
      uid: this.deps.uids && role !== 'root' ? this.deps.uids[role] : null,
      uids: this.deps.uids,
      cgroupProcs: this.deps.cgroup?.procsFiles ?? [],
    };
  }

  private launch(argv: string[], options: StartOptions, role: Role = 'agent'): LocalProcess {
    if (this.killed) throw new SandboxError(`sandbox ${this.id} has been killed`);
    if (argv.length === 0) throw new SandboxError('empty command');
    if (role === 'verifier' && !this.verifierReady) throw new SandboxError('verifier commands run only after prepareVerifier()');
    const cwd = options.cwd ?? this.workdir;
    const isolation = this.deps.isolation;
    const hostArgv = isolation.wrap(argv, this.deps.dirs, cwd, this.identity(role));
    const child = new LocalProcess({
      hostArgv,
      hostCwd: isolation.name === 'none' ? (isolation.toHostPath(cwd, this.deps.dirs) ?? cwd) : this.deps.dirs.home,
      // The marker comes last: no env of the caller's may hide a process from the straggler scan.
      env: { ...(role === 'verifier' ? this.verifierEnv() : this.defaultEnv()), ...options.env, [SANDBOX_MARKER]: this.id },
      processId: `${this.id}-${++this.processCounter}`,
      inheritFiles: isolation.inheritedFiles(this.deps.dirs),
      ...(options.onStdout ? { onStdout: options.onStdout } : {}),
      ...(options.onStderr ? { onStderr: options.onStderr } : {}),
    });
    this.processes.add(child);
    void child.exited.then(() => this.processes.delete(child));
    return child;
  }

  async start(argv: string[], options: StartOptions = {}): Promise<SandboxProcess> {
    return this.launch(argv, options);
  }

  /**
   * For offline stand-ins of remote backends whose sandboxes have a root user (the E2B stand-in), never when serving:
   * runs as the server's uid (root, when the server is root) with only the capabilities that administer the sandbox
   * (chown, any file, signal any uid) and, where the sandbox has uids of its own, in the host's pid namespace, so it
   * sees and can signal the sandbox's other commands (each runs in a pid namespace of its own). It writes the
   * provider's `rootUser.dirs`, which other commands can only read. Allowed only with `LocalProviderOptions.rootUser`
   * and bubblewrap.
   */
  async startAsRoot(argv: string[], options: StartOptions = {}): Promise<SandboxProcess> {
    if (!this.deps.rootUser || this.deps.isolation.name !== 'bubblewrap') {
      throw new SandboxError('root commands need the rootUser option of the local provider and bubblewrap');
    }
    return this.launch(argv, options, 'root');
  }

  async run(argv: string[], options: RunOptions): Promise<CommandResult> {
    return runToCompletion(
      options,
      (io) => {
        const child = this.launch(argv, io, options.as ?? 'agent');
        // A local process always gets a stdin pipe: without input, it is closed at once (the command reads EOF).
        if (options.stdin === undefined) void child.endInput();
        return child;
      },
      // A command's process tree ends with it: background children it left behind are killed too.
      (child) => child.kill(),
    );
  }

  private hostPath(sandboxPath: string): string {
    const absolute = path.posix.isAbsolute(sandboxPath) ? sandboxPath : path.posix.join(this.workdir, sandboxPath);
    const hostPath = this.deps.isolation.toHostPath(absolute, this.deps.dirs);
    if (hostPath === null) throw new SandboxError(`${sandboxPath} is outside the sandbox's home and /tmp`);
    return hostPath;
  }

  private hostBase(hostPath: string): string {
    const { home, tests, tmp } = this.deps.dirs;
    return [home, tests].find((base) => isUnder(hostPath, base)) ?? tmp;
  }

  async writeFile(sandboxPath: string, content: string | Uint8Array): Promise<void> {
    const target = this.hostPath(sandboxPath);
    // Once the verifier has the workdir, what the host adds (the test script) is the verifier's too.
    const owner = this.deps.uids ? this.deps.uids[this.verifierReady ? 'verifier' : 'agent'] : null;
    await writeFileNoFollow(this.hostBase(target), target, content, owner);
  }

  async readFile(sandboxPath: string): Promise<Buffer> {
    const target = this.hostPath(sandboxPath);
    return readFileNoFollow(this.hostBase(target), target);
  }

  /** The files are on this machine: one at a time costs nothing. */
  async writeFiles(files: ReadonlyArray<{ path: string; content: string | Uint8Array }>): Promise<void> {
    for (const file of files) await this.writeFile(file.path, file.content);
  }

  async readFiles(paths: readonly string[]): Promise<Map<string, Buffer>> {
    const found = new Map<string, Buffer>();
    for (const file of paths) {
      const content = await this.readFile(file).catch(() => null);
      if (content) found.set(file, content);
    }
    return found;
  }

  async listFiles(dir: string, options: { maxDepth?: number } = {}): Promise<FileEntry[]> {
    const target = this.hostPath(dir);
    return listTreeNoFollow(this.hostBase(target), target, options.maxDepth ?? 64);
  }

  async resourcePath(relativePath: string): Promise<string> {
    return path.posix.join(this.deps.isolation.resourcesDir(), relativePath);
  }

  /** Nothing to install: the binaries are the host's, configured at start-up. */
  async ensureBinary(binary: SandboxBinary): Promise<{ path: string; installed: boolean }> {
    return { path: await this.binaryPath(binary), installed: false };
  }

  async binaryPath(binary: SandboxBinary): Promise<string> {
    const found = this.deps.isolation.binaryPath(binary);
    if (!found) throw new SandboxError(`${binary} is not available in local sandboxes (no binary was configured)`);
    return found;
  }

  async pythonExecutable(): Promise<string> {
    if (!this.deps.pythonExecutable) throw new SandboxError(this.deps.pythonProblem ?? 'no Python interpreter available');
    return this.deps.pythonExecutable;
  }

  async openLlmChannel(accept: (connection: Duplex) => void): Promise<LlmChannel> {
    if (this.killed) throw new SandboxError(`sandbox ${this.id} has been killed`);
    const [node, bridge] = await Promise.all([this.binaryPath('node'), this.resourcePath('sandbox/llm-bridge.mjs')]);
    const channel = await openLocalLlmChannel(
      { hostDir: this.deps.dirs.channel, sandboxDir: this.deps.isolation.channelDir(this.deps.dirs), node, bridge },
      accept,
    );
    if (this.killed) {
      // Killed while the channel was opening: nobody else would ever close it.
      await channel.close();
      throw new SandboxError(`sandbox ${this.id} has been killed`);
    }
    this.channels.add(channel);
    return channel;
  }

  async prepareVerifier(): Promise<void> {
    if (this.killed) throw new SandboxError(`sandbox ${this.id} has been killed`);
    this.verifierReady = false;
    await this.killProcesses();
    // From here on nothing of the agent's runs, so nothing changes under these host-side, no-follow steps.
    try {
      await this.makeVerifierPlace();
    } catch (error) {
      throw new SandboxError(`could not prepare the verifier of sandbox ${this.id}: ${(error as Error).message}`);
    }
    this.verifierReady = true;
  }

  private async makeVerifierPlace(): Promise<void> {
    const { dirs } = this.deps;
    const uids = this.deps.uids;
    const agent = uids?.agent ?? null;
    const verifier = uids?.verifier ?? null;
    // The agent may have made its home unreadable (chmod 000 ~) or, sharing the server's uid, replaced it.
    await ensureDirectory(dirs.home, 0o755, agent);
    // Whatever the agent left at ~/logs (a link, a file, a tree with odd modes) goes; the host makes it anew.
    const logs = path.dirname(dirs.reward);
    await removeNoFollow(logs);
    await makeDir(logs, 0o755, null);
    await makeDir(dirs.reward, 0o755, verifier);
    const workdir = path.join(dirs.home, 'workdir');
    await ensureDirectory(workdir, 0o755, agent);
    // Tests build and write in the workdir: it becomes the verifier's (a link is re-owned, never followed).
    if (agent !== null && verifier !== null && agent !== verifier) await handOverTree(workdir, agent, verifier);
    for (const dir of [dirs.verifierHome, dirs.verifierTmp]) {
      await removeNoFollow(dir);
      await makeDir(dir, 0o700, verifier);
    }
    if (this.verifierFilesDir !== null) {
      // Harbor's /tests: empty, the verifier's, seen by verifier commands only (isolation.ts).
      await removeNoFollow(dirs.tests);
      await makeDir(dirs.tests, 0o755, verifier);
    }
    // Test scripts written for one shared HOME write `$HOME/logs/verifier/reward.txt`: that still reaches the reward dir.
    await symlink(path.posix.join(this.homeDir, 'logs'), path.join(dirs.verifierHome, 'logs'));
  }

  /** Every process of the sandbox: the ones it started, its cgroup's, its uids' and its marker's (root's, or one that slipped out). */
  private async killProcesses(): Promise<void> {
    await this.deps.cgroup?.kill();
    const lease = this.deps.uidLease;
    if (lease) await killProcessesOf([lease.uids.agent, lease.uids.verifier]);
    await Promise.all([...this.processes].map((p) => p.kill()));
    await killAndWait(await findProcessesByEnvMarker(SANDBOX_MARKER, this.id));
  }

  kill(): Promise<void> {
    this.killPromise ??= (async () => {
      if (this.lifetimeTimer) clearTimeout(this.lifetimeTimer);
      await Promise.all([...this.channels].map((c) => c.close()));
      await this.killProcesses();
      const problems: unknown[] = [];
      const step = (work: () => Promise<void>) => work().catch((error: unknown) => void problems.push(error));
      // The tmpfs and network namespace first (a mount point cannot be removed), the files, then the cgroup and the uids for the next sandbox.
      if (this.deps.tmpfsMountPoint) await step(() => unmount(this.deps.tmpfsMountPoint!));
      if (this.deps.dirs.network) await step(() => removeNetworkNamespace(this.deps.dirs.network!));
      await step(() => removeNoFollow(this.deps.dirs.root));
      if (this.deps.cgroup) await step(() => this.deps.cgroup!.remove());
      if (this.deps.uidLease) await step(() => this.deps.uidLease!.release());
      this.deps.onKilled(this);
      if (problems.length > 0) throw new SandboxError(`sandbox ${this.id} was not fully cleaned up: ${problems.map(String).join('; ')}`);
    })();
    return this.killPromise;
  }
}

/** `dir` as a real directory with `mode` (re-made empty when something else is there), owned by `owner` when given. */
async function ensureDirectory(dir: string, mode: number, owner: number | null): Promise<void> {
  const info = await lstat(dir).catch(() => null);
  if (info?.isDirectory()) {
    await chmod(dir, mode);
    return;
  }
  await removeNoFollow(dir);
  await makeDir(dir, mode, owner);
}

export function newSandboxId(label?: string): string {
  const suffix = randomBytes(6).toString('hex');
  const safeLabel = label?.replace(/[^a-zA-Z0-9_-]/g, '').slice(0, 24);
  return safeLabel ? `${safeLabel}-${suffix}` : `sbx-${suffix}`;
}
