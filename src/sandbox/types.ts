/**
 * The backend-agnostic sandbox contract. Paths are always as seen from inside the sandbox; each backend
 * maps them to wherever the files really live. Commands are argv arrays (use `bash()` for shell lines).
 */

export type SandboxBackendName = 'local' | 'e2b';
export type SandboxTool = 'opencode' | 'node';

export interface RunOptions {
  /** Working directory inside the sandbox; defaults to the sandbox's workdir. */
  cwd?: string;
  /** Extra environment variables, merged over the sandbox defaults. */
  env?: Record<string, string>;
  /** Text fed to the command's stdin, which is then closed. Without it stdin is empty. */
  stdin?: string;
  /** Hard deadline: the command's whole process tree is killed when it passes. */
  timeoutMs: number;
  /** Aborting kills the command's process tree. */
  signal?: AbortSignal;
  /** Per-stream capture limit; the middle of longer output is dropped with a marker. Default 1 MiB. */
  maxOutputBytes?: number;
  /** Sees every stdout chunk as it arrives (in addition to the capture). */
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
}

export interface CommandResult {
  /** Exit status; a command ended by a signal reports 128 + signal number, as shells do. */
  exitCode: number;
  /** Name of the signal that ended the command, if one did. */
  signal: string | null;
  stdout: string;
  stderr: string;
  durationMs: number;
  /** True when the command was killed because `timeoutMs` passed. */
  timedOut: boolean;
  /** True when the command was killed because `signal` was aborted. */
  aborted: boolean;
}

export interface StartOptions {
  cwd?: string;
  env?: Record<string, string>;
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
}

export interface ProcessExit {
  exitCode: number;
  signal: string | null;
}

/** A long-lived process inside a sandbox, with streaming stdin and output. Owned by its sandbox. */
export interface SandboxProcess {
  readonly pid: number;
  /** Resolves when the process (and its process tree) has ended, however that happened. */
  readonly exited: Promise<ProcessExit>;
  write(data: string | Buffer): void;
  endInput(): void;
  kill(): Promise<void>;
}

export interface FileEntry {
  /** Path relative to the listed directory, with `/` separators. */
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
}

export interface Sandbox {
  readonly id: string;
  readonly backend: SandboxBackendName;
  /** How the sandbox is isolated from its host, for reporting (e.g. "bubblewrap", "none"). */
  readonly isolation: string;
  /** The agent's working directory inside the sandbox. */
  readonly workdir: string;
  /** The sandbox user's home directory. */
  readonly homeDir: string;

  run(argv: string[], options: RunOptions): Promise<CommandResult>;
  start(argv: string[], options?: StartOptions): Promise<SandboxProcess>;

  writeFile(path: string, content: string | Uint8Array): Promise<void>;
  /** Reads a regular file; symlinks are never followed out of the sandbox. */
  readFile(path: string): Promise<Buffer>;
  /** Lists a directory tree without following symlinks. */
  listFiles(dir: string, options?: { maxDepth?: number }): Promise<FileEntry[]>;

  /**
   * Path inside the sandbox of a file shipped in the project's resources/ directory
   * (e.g. `python/driver.py`), making it available there first if needed.
   */
  resourcePath(relativePath: string): Promise<string>;
  /** Absolute path of the Python interpreter to use inside this sandbox. */
  pythonExecutable(): Promise<string>;
  /** Absolute path inside the sandbox of a program the project ships or runs on (`opencode`, `node`). */
  toolExecutable(tool: SandboxTool): Promise<string>;

  /**
   * A directory shared with the host, where the host can serve unix sockets into the sandbox (the
   * local backend's way to reach the recording proxy without a network). Null for remote sandboxes.
   */
  readonly hostChannel: { hostDir: string; sandboxDir: string } | null;

  /** Kills every process of the sandbox and deletes its files. Safe to call more than once. */
  kill(): Promise<void>;
  readonly killed: boolean;
}

export interface SandboxCreateOptions {
  /** Appears in logs and in the sandbox id, to tie a sandbox to its episode. */
  label?: string;
}

/** Creates sandboxes and remembers them, so that shutdown can kill every one still alive. */
export interface SandboxProvider {
  readonly backend: SandboxBackendName;
  create(options?: SandboxCreateOptions): Promise<Sandbox>;
  killAll(): Promise<void>;
}

/** argv for running one shell line with bash, the same way on every backend. */
export function bash(commandLine: string): string[] {
  return ['bash', '-c', commandLine];
}
