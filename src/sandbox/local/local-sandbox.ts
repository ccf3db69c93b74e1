import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { CappedOutput } from '../../util/capped-output.js';
import { findProcessesByEnvMarker } from '../../util/process-tree.js';
import type { CommandResult, FileEntry, RunOptions, Sandbox, SandboxProcess, SandboxTool, StartOptions } from '../types.js';
import { SANDBOX_UID, type Isolation, type SandboxDirs } from './isolation.js';
import { LocalProcess } from './local-process.js';
import { listTreeNoFollow, readFileNoFollow, SandboxPathError, writeFileNoFollow } from './safe-fs.js';

/** Environment variable naming the sandbox, carried by all of its processes. */
export const SANDBOX_MARKER = 'OPENCODE_ENV_SANDBOX_ID';

const DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024;
const SYSTEM_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

export interface LocalSandboxDeps {
  id: string;
  dirs: SandboxDirs;
  isolation: Isolation;
  pythonExecutable: string | null;
  pythonProblem: string | null;
  /** Called once the sandbox is gone, so its provider can forget it. */
  onKilled: (sandbox: LocalSandbox) => void;
}

export class LocalSandbox implements Sandbox {
  readonly backend = 'local' as const;
  readonly id: string;
  readonly isolation: string;
  readonly homeDir: string;
  readonly workdir: string;
  readonly hostChannel: { hostDir: string; sandboxDir: string };
  private readonly processes = new Set<LocalProcess>();
  private killPromise: Promise<void> | null = null;
  private processCounter = 0;

  constructor(private readonly deps: LocalSandboxDeps) {
    this.id = deps.id;
    this.isolation = deps.isolation.name;
    this.homeDir = deps.isolation.homeDir(deps.dirs);
    this.workdir = path.posix.join(this.homeDir, 'workdir');
    this.hostChannel = { hostDir: deps.dirs.channel, sandboxDir: deps.isolation.channelDir(deps.dirs) };
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
      [SANDBOX_MARKER]: this.id,
    };
  }

  private launch(argv: string[], options: StartOptions): LocalProcess {
    if (this.killed) throw new Error(`sandbox ${this.id} has been killed`);
    if (argv.length === 0) throw new Error('empty command');
    const cwd = options.cwd ?? this.workdir;
    const isolation = this.deps.isolation;
    const child = new LocalProcess({
      hostArgv: isolation.wrap(argv, this.deps.dirs, cwd),
      hostCwd: isolation.name === 'none' ? (isolation.toHostPath(cwd, this.deps.dirs) ?? cwd) : this.deps.dirs.home,
      env: { ...this.defaultEnv(), ...options.env },
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
    if (options.stdin !== undefined) child.write(options.stdin);
    child.endInput();

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
    if (hostPath === null) throw new SandboxPathError(`${sandboxPath} is outside the sandbox's home and /tmp`);
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

  async toolExecutable(tool: SandboxTool): Promise<string> {
    const found = this.deps.isolation.toolPath(tool);
    if (!found) throw new Error(`${tool} is not available in local sandboxes (no binary was configured)`);
    return found;
  }

  async pythonExecutable(): Promise<string> {
    if (!this.deps.pythonExecutable) throw new Error(this.deps.pythonProblem ?? 'no Python interpreter available');
    return this.deps.pythonExecutable;
  }

  kill(): Promise<void> {
    this.killPromise ??= (async () => {
      await Promise.all([...this.processes].map((p) => p.kill()));
      if (this.deps.isolation.name === 'none') {
        for (const pid of await findProcessesByEnvMarker(SANDBOX_MARKER, this.id)) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
      }
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
