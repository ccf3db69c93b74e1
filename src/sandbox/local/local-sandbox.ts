import { randomBytes } from 'node:crypto';
import { chown, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { SandboxError } from '../../errors.js';
import { CappedOutput } from '../../util/capped-output.js';
import { findProcessesByEnvMarker, killAndWait } from '../../util/process-tree.js';
import type { CommandResult, FileEntry, LlmChannel, RunOptions, Sandbox, SandboxBinary, SandboxProcess, StartOptions } from '../types.js';
import { SANDBOX_UID, type Isolation, type SandboxDirs } from './isolation.js';
import { openLocalLlmChannel } from './llm-channel.js';
import { LocalProcess } from './local-process.js';
import { listTreeNoFollow, readFileNoFollow, writeFileNoFollow } from './safe-fs.js';

/** Environment variable naming the sandbox, carried by all of its processes. */
const SANDBOX_MARKER = 'OPENCODE_ENV_SANDBOX_ID';

const DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024;
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
}

export class LocalSandbox implements Sandbox {
  readonly backend = 'local' as const;
  readonly id: string;
  readonly isolation: string;
  readonly homeDir: string;
  readonly workdir: string;
  readonly rewardDir: string;
  private readonly processes = new Set<LocalProcess>();
  private readonly channels = new Set<LlmChannel>();
  private killPromise: Promise<void> | null = null;
  private processCounter = 0;
  private readonly lifetimeTimer: NodeJS.Timeout | null;

  constructor(private readonly deps: LocalSandboxDeps) {
    this.id = deps.id;
    this.isolation = deps.isolation.name;
    this.homeDir = deps.isolation.homeDir(deps.dirs);
    this.workdir = path.posix.join(this.homeDir, 'workdir');
    this.rewardDir = path.posix.join(this.homeDir, 'logs', 'verifier');
    // Unref'd: an expiring sandbox must not keep the server alive, and shutdown kills it anyway.
    this.lifetimeTimer = deps.lifetimeMs === null ? null : setTimeout(() => void this.kill(), deps.lifetimeMs).unref();
  }

  get killed(): boolean {
    return this.killPromise !== null;
  }

  private defaultEnv(): Record<string, string> {
    const pathDirs = [...SYSTEM_PATH];
    if (this.deps.pythonExecutable) {
      const pythonBin = path.dirname(this.deps.pythonExecutable);
      if (!pathDirs.includes(pythonBin)) pathDirs.unshift(pythonBin);
    }
    return {
      PATH: pathDirs.join(':'),
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

  private launch(argv: string[], options: StartOptions): LocalProcess {
    if (this.killed) throw new SandboxError(`sandbox ${this.id} has been killed`);
    if (argv.length === 0) throw new SandboxError('empty command');
    const cwd = options.cwd ?? this.workdir;
    const isolation = this.deps.isolation;
    const child = new LocalProcess({
      hostArgv: isolation.wrap(argv, this.deps.dirs, cwd),
      hostCwd: isolation.name === 'none' ? (isolation.toHostPath(cwd, this.deps.dirs) ?? cwd) : this.deps.dirs.home,
      // The marker comes last: no env of the caller's may hide a process from the straggler scan.
      env: { ...this.defaultEnv(), ...options.env, [SANDBOX_MARKER]: this.id },
      processId: `${this.id}-${++this.processCounter}`,
      scanForStragglers: isolation.name === 'none',
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

  async run(argv: string[], options: RunOptions): Promise<CommandResult> {
    const limit = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
    const stdout = new CappedOutput(limit);
    const stderr = new CappedOutput(limit);
    const startedAt = performance.now();
    if (options.signal?.aborted) {
      return { exitCode: 130, signal: null, stdout: '', stderr: 'aborted before start', durationMs: 0, timedOut: false, aborted: true };
    }
    const child = this.launch(argv, {
      ...(options.cwd ? { cwd: options.cwd } : {}),
      ...(options.env ? { env: options.env } : {}),
      onStdout: (chunk) => {
        stdout.push(chunk);
        options.onStdout?.(chunk);
      },
      onStderr: (chunk) => {
        stderr.push(chunk);
        options.onStderr?.(chunk);
      },
    });
    if (options.stdin !== undefined) void child.write(options.stdin);
    void child.endInput();

    let timedOut = false;
    let aborted = false;
    const timer = setTimeout(() => {
      timedOut = true;
      void child.kill();
    }, options.timeoutMs);
    const onAbort = () => {
      aborted = true;
      void child.kill();
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const exit = await child.exited;
      // A command's process tree ends with it: background children it left behind are killed too.
      await child.kill();
      return {
        exitCode: exit.exitCode,
        signal: exit.signal,
        stdout: stdout.toString(),
        stderr: stderr.toString(),
        durationMs: performance.now() - startedAt,
        timedOut,
        aborted,
      };
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
    }
  }

  private hostPath(sandboxPath: string): string {
    const absolute = path.posix.isAbsolute(sandboxPath) ? sandboxPath : path.posix.join(this.workdir, sandboxPath);
    const hostPath = this.deps.isolation.toHostPath(absolute, this.deps.dirs);
    if (hostPath === null) throw new SandboxError(`${sandboxPath} is outside the sandbox's home and /tmp`);
    return hostPath;
  }

  private hostBase(hostPath: string): string {
    const rel = path.relative(this.deps.dirs.home, hostPath);
    return rel.startsWith('..') || path.isAbsolute(rel) ? this.deps.dirs.tmp : this.deps.dirs.home;
  }

  async writeFile(sandboxPath: string, content: string | Uint8Array): Promise<void> {
    const target = this.hostPath(sandboxPath);
    const owner = this.deps.isolation.dropsPrivileges ? SANDBOX_UID : null;
    await writeFileNoFollow(this.hostBase(target), target, content, owner);
  }

  async readFile(sandboxPath: string): Promise<Buffer> {
    const target = this.hostPath(sandboxPath);
    return readFileNoFollow(this.hostBase(target), target);
  }

  async listFiles(dir: string, options: { maxDepth?: number } = {}): Promise<FileEntry[]> {
    const target = this.hostPath(dir);
    return listTreeNoFollow(this.hostBase(target), target, options.maxDepth ?? 64);
  }

  async resourcePath(relativePath: string): Promise<string> {
    return path.posix.join(this.deps.isolation.resourcesDir(), relativePath);
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
    await Promise.all([...this.processes].map((p) => p.kill()));
    // Host side, after the agent's processes are gone: whatever the agent left at ~/logs (a link, a file, odd modes) goes.
    const logs = path.join(this.deps.dirs.home, 'logs');
    await rm(logs, { recursive: true, force: true });
    await mkdir(path.join(logs, 'verifier'), { recursive: true, mode: 0o755 });
    if (this.deps.isolation.dropsPrivileges) await chown(path.join(logs, 'verifier'), SANDBOX_UID, SANDBOX_UID);
  }

  kill(): Promise<void> {
    this.killPromise ??= (async () => {
      if (this.lifetimeTimer) clearTimeout(this.lifetimeTimer);
      await Promise.all([...this.channels].map((c) => c.close()));
      await Promise.all([...this.processes].map((p) => p.kill()));
      if (this.deps.isolation.name === 'none') await killAndWait(await findProcessesByEnvMarker(SANDBOX_MARKER, this.id));
      await rm(this.deps.dirs.root, { recursive: true, force: true, maxRetries: 3 });
      this.deps.onKilled(this);
    })();
    return this.killPromise;
  }
}

export function newSandboxId(label?: string): string {
  const suffix = randomBytes(6).toString('hex');
  const safeLabel = label?.replace(/[^a-zA-Z0-9_-]/g, '').slice(0, 24);
  return safeLabel ? `${safeLabel}-${suffix}` : `sbx-${suffix}`;
}
