import type { Duplex } from 'node:stream';

/**
 * The backend-agnostic sandbox contract. Paths are always as seen from inside the sandbox; each backend
 * maps them to wherever the files really live. Commands are argv arrays (use `bash()` for shell lines).
 */

export type SandboxBackendName = 'local' | 'e2b';
/** Programs the project ships or runs on, made available inside sandboxes. */
export type SandboxBinary = 'opencode' | 'node';
/** Where Harbor's tests go for the verifier (`Sandbox.verifierFilesDir`), and where its test scripts write their reward. */
export const HARBOR_TESTS_DIR = '/tests';
export const HARBOR_REWARD_DIR = '/logs/verifier';

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
  /**
   * Who runs the command. `verifier` (only after `prepareVerifier()`) runs it beyond the agent's reach: its own
   * identity (a uid of its own where the backend can), its own HOME and /tmp, a clean environment without the
   * agent's variables, and `PYTHONNOUSERSITE`. Default `agent`.
   */
  as?: 'agent' | 'verifier';
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
  /** Resolves once the data is handed to the process (a remote backend sends it over the network). */
  write(data: string | Buffer): Promise<void>;
  /** Closes the process's stdin. */
  endInput(): Promise<void>;
  kill(): Promise<void>;
}

/**
 * How programs inside a sandbox reach an HTTP service on the host (the recording proxy) with no network
 * route to it: each connection they make to `url` is delivered to the handler given to `openLlmChannel`.
 * The local backend relays a loopback port to a unix socket; a remote backend carries the bytes over its
 * own command channel.
 */
export interface LlmChannel {
  /**
   * Base of the URLs that programs run through `command()` use, e.g. `http://127.0.0.1:<port>`. Opaque:
   * pass it only in the arguments or environment of a `command()`, where the backend makes it valid.
   */
  readonly url: string;
  /** argv that runs `argv` with the channel's in-sandbox end up for the whole run. */
  command(argv: string[]): Promise<string[]>;
  /** Stops accepting connections and ends the open ones. Safe to call more than once. */
  close(): Promise<void>;
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
  /**
   * Writes many files at once, making their parent directories: one archive, so a constant number of round trips
   * on a remote backend, however many files. Ownership as for `writeFile`.
   */
  writeFiles(files: ReadonlyArray<{ path: string; content: string | Uint8Array }>): Promise<void>;
  /**
   * Reads many regular files at once (one archive on a remote backend), keyed by the paths as given. A path that is
   * missing, unreadable or not a regular file is left out; symlinks are never followed.
   */
  readFiles(paths: readonly string[]): Promise<Map<string, Buffer>>;
  /** Lists a directory tree without following symlinks. */
  listFiles(dir: string, options?: { maxDepth?: number }): Promise<FileEntry[]>;

  /**
   * Path inside the sandbox of a file shipped in the project's resources/ directory
   * (e.g. `python/driver.py`), making it available there first if needed.
   */
  resourcePath(relativePath: string): Promise<string>;
  /** Absolute path of the Python interpreter to use inside this sandbox. */
  pythonExecutable(): Promise<string>;
  /** Absolute path inside the sandbox of a program the project ships or runs on. */
  binaryPath(binary: SandboxBinary): Promise<string>;
  /**
   * Like `binaryPath`, but installs the binary first where the backend can (an E2B template without opencode gets
   * the pinned version); `installed` says it had to, so a rollout can report what that cost.
   */
  ensureBinary(binary: SandboxBinary): Promise<{ path: string; installed: boolean }>;

  /**
   * Where verifier commands write their reward (`reward.txt` or `reward.json`), e.g. `/home/user/logs/verifier`.
   * Created by `prepareVerifier()`, writable only by commands run `as: 'verifier'`.
   */
  readonly rewardDir: string;
  /**
   * Harbor's verifier paths, or null where the sandbox shares the host's root (plain processes) and has none. When set
   * (`HARBOR_TESTS_DIR`): after `prepareVerifier()` it is a fresh directory that the host writes into with `writeFile(s)`
   * (files owned by the verifier) and verifier commands read, which the agent never saw; and `HARBOR_REWARD_DIR` is the
   * reward directory for verifier commands too.
   */
  readonly verifierFilesDir: string | null;
  /**
   * Ends the agent's part: kills every process still running in the sandbox, then (from the host side, never
   * through the agent's processes) replaces whatever is at the reward directory's place with a fresh, empty
   * directory that only verifier commands can write, and hands the workdir to the verifier. Nothing the
   * agent did to its files can make this fail; only a broken sandbox can (a SandboxError).
   */
  prepareVerifier(): Promise<void>;

  /** Opens a channel whose connections from inside the sandbox reach `accept` on the host. Closed by `kill`. */
  openLlmChannel(accept: (connection: Duplex) => void): Promise<LlmChannel>;

  /** Kills every process of the sandbox, closes its channels and deletes its files. Safe to call more than once. */
  kill(): Promise<void>;
  readonly killed: boolean;
}

export interface SandboxCreateOptions {
  /** Appears in logs and in the sandbox id, to tie a sandbox to its episode. */
  label?: string;
  /** The backend's template to start from (an E2B template); backends without templates ignore it. */
  template?: string;
  /**
   * An absolute working directory, where a template's image keeps the task's files (a Harbor task's WORKDIR, e.g.
   * /app). Backends with a fixed workdir (local) refuse it.
   */
  workdir?: string;
  /** The sandbox is killed this long after creation, whatever runs in it. Without it, it lives until killed. */
  lifetimeMs?: number;
  /** Tags that identify the sandbox's owner (session, rollout), e.g. for finding orphans. */
  metadata?: Record<string, string>;
  /** Environment variables every process in the sandbox gets (a command's own `env` wins). */
  env?: Record<string, string>;
  /**
   * Whether the sandbox may reach the internet (default: yes). Backends whose network is a server setting (local:
   * OPENCODE_ENV_SANDBOX_NETWORK) ignore it.
   */
  allowInternet?: boolean;
}

/** Creates sandboxes and remembers them, so that shutdown can kill every one still alive. */
export interface SandboxProvider {
  readonly backend: SandboxBackendName;
  /** How this provider's sandboxes are isolated from the host (e.g. "bubblewrap"); may probe the host once. */
  isolation(): Promise<string>;
  create(options?: SandboxCreateOptions): Promise<Sandbox>;
  killAll(): Promise<void>;
}

/** argv for running one shell line with bash, the same way on every backend. */
export function bash(commandLine: string): string[] {
  return ['bash', '-c', commandLine];
}
