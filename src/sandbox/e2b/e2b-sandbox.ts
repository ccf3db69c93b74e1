import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { FileType, NotFoundError, type Sandbox as SdkSandbox } from 'e2b';
import { SandboxError, SandboxFileNotFoundError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { runToCompletion } from '../run-to-completion.js';
import {
  bash,
  HARBOR_REWARD_DIR,
  HARBOR_TESTS_DIR,
  type CommandResult,
  type FileEntry,
  type LlmChannel,
  type RunOptions,
  type Sandbox,
  type SandboxBinary,
  type SandboxProcess,
  type StartOptions,
} from '../types.js';
import { openRelayLlmChannel } from '../relay/relay-channel.js';
import { classifyE2bError, isTransientE2bError, sandboxErrorFromE2b, type E2bStep } from './e2b-errors.js';
import { E2bProcess } from './e2b-process.js';
import { IdleLifetime } from './lifetime.js';
import { withRetries, type RetryPolicy } from './retry.js';
import { killCommandLine, shellQuote, wrappedCommandLine } from './shell.js';
import { packTar, unpackTar } from '../../util/tar.js';

const HOME_DIR = '/home/user';
/** The template's unprivileged user, who runs the agent's commands. */
const AGENT_USER = 'user';
/** E2B runs a command as any user: the verifier is root, which the agent cannot become or signal. */
const VERIFIER_USER = 'root';
const VERIFIER_HOME = '/root';
const VERIFIER_TMP = '/root/.opencode-env-tmp';
/** Root-owned, so the agent cannot change what later runs from there (the Python driver, the LLM bridge). */
const RESOURCES_DIR = '/opt/opencode-env/resources';

/** Deadline of our own housekeeping commands (kills, lookups): short, they do little. */
const HOUSEKEEPING_TIMEOUT_MS = 30_000;
/** Installing opencode with npm in a sandbox whose template lacks it: a download of ~50 MB. */
const INSTALL_TIMEOUT_MS = 300_000;
/** readFiles' archive, base64: past this the capture would drop its middle (the runner asks for at most 1 MiB of files). */
const READ_FILES_OUTPUT_LIMIT = 64 * 1024 * 1024;
/** How long kill() waits for the streams of its processes to break once the VM is gone. */
const KILL_GRACE_MS = 5000;

export interface E2bSandboxDeps {
  sdk: SdkSandbox;
  /** Killed this long after its last activity (E2B kills it then too: created with this timeout, renewed while work goes on). */
  lifetimeMs: number;
  /** The template the sandbox was made from, for messages. */
  template: string;
  /** The opencode-ai version installed when the template lacks opencode (the server's own); without it, none is. */
  opencodeVersion?: string | undefined;
  /** The project's resources/ directory on this machine, uploaded on first use. */
  resourcesDir: string;
  onKilled: (sandbox: E2bSandbox) => void;
  logger: Logger;
  /** Retries of file transfers; E2B_RETRY_POLICY by default. */
  retryPolicy?: RetryPolicy;
  /** An absolute working directory (a task image's WORKDIR); default ~/workdir. */
  workdir?: string | undefined;
}

/** `admin` is root for this backend's own work (installing opencode), before the verifier's turn too. */
type Role = 'agent' | 'verifier' | 'admin';

/**
 * A sandbox in E2B's cloud (a Firecracker microVM), driven through the SDK: commands and files go over envd.
 * Every command runs in `wrappedCommandLine`, so its whole process tree can be found and killed; the SDK's own
 * command timeout is always off (`timeoutMs: 0`: its default of 60 s would cut long commands and, worse, leave
 * them running), and deadlines are enforced here by killing the tree.
 */
export class E2bSandbox implements Sandbox {
  readonly backend = 'e2b' as const;
  readonly isolation = 'e2b-microvm';
  readonly id: string;
  readonly homeDir = HOME_DIR;
  readonly workdir: string;
  readonly rewardDir = `${HOME_DIR}/logs/verifier`;
  readonly verifierFilesDir = HARBOR_TESTS_DIR;
  private readonly processes = new Set<E2bProcess>();
  private readonly channels = new Set<LlmChannel>();
  private readonly resources = new Map<string, Promise<string>>();
  private readonly lookups = new Map<string, Promise<string>>();
  private readonly lifetime: IdleLifetime;
  private killPromise: Promise<void> | null = null;
  private processCounter = 0;
  /** Set by `prepareVerifier()`: verifier commands may run, and files the host writes are root's. */
  private verifierReady = false;

  constructor(private readonly deps: E2bSandboxDeps) {
    this.id = deps.sdk.sandboxId;
    this.workdir = deps.workdir ?? `${HOME_DIR}/workdir`;
    // E2B ends the VM at the same moment; this makes the object refuse work (and frees its slot) then too.
    this.lifetime = new IdleLifetime({
      lifetimeMs: deps.lifetimeMs,
      renew: (ms) => deps.sdk.setTimeout(ms),
      onExpired: () => void this.kill().catch(() => undefined),
      onRenewFailed: (error) => deps.logger.warn({ sandbox: this.id, error }, "could not extend an E2B sandbox's lifetime; will try again"),
    });
  }

  get killed(): boolean {
    return this.killPromise !== null;
  }

  private ensureAlive(): void {
    if (this.killed) throw new SandboxError(`sandbox ${this.id} has been killed`);
  }

  private envFor(role: Role, env: Record<string, string> | undefined): Record<string, string> {
    if (role === 'agent') return { TMPDIR: '/tmp', ...env };
    if (role === 'admin') return { HOME: VERIFIER_HOME, ...env };
    // Nothing of the agent's: not its HOME, /tmp or user site-packages. The create options' env is E2B's sandbox env.
    return { HOME: VERIFIER_HOME, USER: 'verifier', LOGNAME: 'verifier', TMPDIR: VERIFIER_TMP, PYTHONNOUSERSITE: '1', ...env };
  }

  private userFor(role: Role): string {
    return role === 'agent' ? AGENT_USER : VERIFIER_USER;
  }

  private async launch(argv: string[], options: StartOptions, role: Role, withStdin: boolean): Promise<E2bProcess> {
    this.ensureAlive();
    if (argv.length === 0) throw new SandboxError('empty command');
    if (role === 'verifier' && !this.verifierReady) throw new SandboxError('verifier commands run only after prepareVerifier()');
    this.lifetime.touch();
    const marker = `${this.id}-${++this.processCounter}`;
    const user = this.userFor(role);
    const decode = (callback: ((chunk: Buffer) => void) | undefined) =>
      callback
        ? (data: string) => {
            this.lifetime.touch();
            callback(Buffer.from(data, 'utf8'));
          }
        : undefined;
    const onStdout = decode(options.onStdout);
    const onStderr = decode(options.onStderr);
    let handle;
    try {
      handle = await this.deps.sdk.commands.run(wrappedCommandLine(argv, marker), {
        background: true,
        stdin: withStdin,
        cwd: options.cwd ? this.absolute(options.cwd) : this.workdir,
        envs: this.envFor(role, options.env),
        user,
        // Never the SDK's deadline (60 s by default): it ends only the stream and leaves the command running.
        timeoutMs: 0,
        ...(onStdout ? { onStdout } : {}),
        ...(onStderr ? { onStderr } : {}),
      });
    } catch (error) {
      // Never retried, whatever failed: the Start request may have reached envd, and a second one could run it twice.
      throw this.failure(`start ${argv[0]}`, error, 'command');
    }
    const process: E2bProcess = new E2bProcess({
      handle,
      killTree: () => this.housekeeping(killCommandLine(marker), user).then(() => undefined),
      onExit: () => this.processes.delete(process),
      onInput: () => this.lifetime.touch(),
    });
    this.processes.add(process);
    return process;
  }

  async start(argv: string[], options: StartOptions = {}): Promise<SandboxProcess> {
    return this.launch(argv, options, 'agent', true);
  }

  async run(argv: string[], options: RunOptions): Promise<CommandResult> {
    return this.runAs(argv, options, options.as ?? 'agent');
  }

  private async runAs(argv: string[], options: RunOptions, role: Role): Promise<CommandResult> {
    return runToCompletion(
      options,
      (io) => this.launch(argv, io, role, options.stdin !== undefined),
      async (child, stopped) => {
        if (child.lostWith !== null && !stopped) throw await this.lostCommand(child, argv);
      },
    );
  }

  /**
   * The error for a command whose stream broke before it ended. It is not run again (it may have run in part, and a
   * Start that reached envd cannot be taken back); if the sandbox is still there, what is left of it is killed.
   */
  private async lostCommand(child: E2bProcess, argv: string[]): Promise<SandboxError> {
    const error = this.failure(`finish ${argv[0]}`, child.lostWith, 'command');
    if (this.killed || classifyE2bError(child.lostWith, 'command') === 'sandbox_ended') return error;
    await child.kill().catch(() => undefined);
    return new SandboxError(`${error.message}; the connection to the command broke while it ran, and it was not run again`, {
      cause: error.cause,
    });
  }

  /** One of our own short commands (a kill, a lookup); its output, or a SandboxError. */
  private async housekeeping(commandLine: string, user: string): Promise<string> {
    this.lifetime.touch();
    try {
      const result = await this.deps.sdk.commands.run(commandLine, { user, timeoutMs: HOUSEKEEPING_TIMEOUT_MS });
      return result.stdout;
    } catch (error) {
      throw this.failure('run a housekeeping command', error, 'command');
    }
  }

  private absolute(sandboxPath: string): string {
    return path.posix.isAbsolute(sandboxPath) ? path.posix.normalize(sandboxPath) : path.posix.join(this.workdir, sandboxPath);
  }

  /** Once the verifier has the workdir, what the host writes (the test script) is root's, like the reward dir. */
  private fileUser(): string {
    return this.verifierReady ? VERIFIER_USER : AGENT_USER;
  }

  async writeFile(sandboxPath: string, content: string | Uint8Array): Promise<void> {
    this.ensureAlive();
    const target = this.absolute(sandboxPath);
    const data = typeof content === 'string' ? content : new Blob([new Uint8Array(content)]);
    const user = this.fileUser();
    await this.transfer(`write ${target}`, () => this.deps.sdk.files.write(target, data, { user }));
  }

  /** E2B's files.read follows symlinks: look first (envd's Stat does not follow the last link), and read regular files only. */
  async readFile(sandboxPath: string): Promise<Buffer> {
    this.ensureAlive();
    const target = this.absolute(sandboxPath);
    const user = this.fileUser();
    return this.transfer(`read ${target}`, async () => {
      const info = await this.deps.sdk.files.getInfo(target, { user }).catch((error: unknown) => {
        throw error instanceof NotFoundError ? new SandboxFileNotFoundError(`${target} does not exist`, { cause: error }) : error;
      });
      if (info.type !== FileType.FILE) throw new SandboxError(`${target} is not a regular file (${info.type ?? 'unknown type'})`);
      return Buffer.from(await this.deps.sdk.files.read(target, { format: 'bytes', user }));
    });
  }

  async listFiles(dir: string, options: { maxDepth?: number } = {}): Promise<FileEntry[]> {
    this.ensureAlive();
    const target = this.absolute(dir);
    const user = this.fileUser();
    return this.transfer(`list ${target}`, async () => {
      const info = await this.deps.sdk.files.getInfo(target, { user });
      if (info.type !== FileType.DIR) throw new SandboxError(`${target} is not a directory (${info.type ?? 'unknown type'})`);
      const entries = await this.deps.sdk.files.list(target, { depth: options.maxDepth ?? 64, user });
      const links = entries.filter((e) => e.type === FileType.SYMLINK).map((e) => `${e.path}/`);
      return (
        entries
          // Nothing reached through a link: the listing never follows one.
          .filter((e) => !links.some((link) => e.path.startsWith(link)))
          .map((e) => ({
            path: path.posix.relative(target, e.path),
            type: entryType(e.type),
            size: e.size,
          }))
          .filter((e) => e.path !== '' && !e.path.startsWith('..'))
      );
    });
  }

  /** One archive uploaded and unpacked in place: two round trips, however many files. */
  async writeFiles(files: ReadonlyArray<{ path: string; content: string | Uint8Array }>): Promise<void> {
    this.ensureAlive();
    if (files.length === 0) return;
    // Relative to /, unpacked from /: tar makes the parent directories, as the user the files belong to.
    const archive = packTar(files.map((file) => ({ path: this.absolute(file.path).slice(1), content: file.content })));
    const role: Role = this.verifierReady ? 'verifier' : 'agent';
    const staging = `${role === 'verifier' ? VERIFIER_TMP : '/tmp'}/opencode-env-upload-${this.id}-${++this.processCounter}.tar`;
    await this.transfer(`upload ${files.length} files`, () =>
      this.deps.sdk.files.write(staging, new Blob([new Uint8Array(archive)]), { user: this.userFor(role) }),
    );
    const unpacked = await this.run(
      bash(`tar -x --no-same-owner -f ${shellQuote(staging)} -C /; status=$?; rm -f ${shellQuote(staging)}; exit $status`),
      {
        timeoutMs: HOUSEKEEPING_TIMEOUT_MS,
        as: role,
      },
    );
    if (unpacked.exitCode !== 0)
      throw new SandboxError(`could not unpack ${files.length} files in sandbox ${this.id}: ${unpacked.stderr.trim()}`);
  }

  /** One archive made in the sandbox and streamed back (base64 on stdout, which carries text): one round trip. */
  async readFiles(paths: readonly string[]): Promise<Map<string, Buffer>> {
    this.ensureAlive();
    const found = new Map<string, Buffer>();
    if (paths.length === 0) return found;
    const byArchivePath = new Map(paths.map((p) => [this.absolute(p).slice(1), p]));
    // Names on stdin (NUL-separated: any name, any count); unreadable ones are skipped, not fatal. A hard link's second
    // name would otherwise arrive as a link without content.
    const packed = await this.run(bash('tar -c -f - -C / --no-recursion --hard-dereference --null -T - 2>/dev/null | base64 -w0'), {
      stdin: `${[...byArchivePath.keys()].join('\0')}\0`,
      timeoutMs: HOUSEKEEPING_TIMEOUT_MS,
      maxOutputBytes: READ_FILES_OUTPUT_LIMIT,
      as: this.verifierReady ? 'verifier' : 'agent',
    });
    if (packed.exitCode !== 0)
      throw new SandboxError(`could not pack ${paths.length} files in sandbox ${this.id}: ${packed.stderr.trim()}`);
    for (const entry of unpackTar(Buffer.from(packed.stdout, 'base64'))) {
      const asked = byArchivePath.get(entry.path);
      // Only regular files: a name that became a symlink arrives as a link, which is never followed.
      if (asked !== undefined && entry.type === 'file') found.set(asked, entry.content);
    }
    return found;
  }

  /** Makes a directory (and its parents) as the agent's user; one that exists already is fine. */
  /** The agent's workdir, made and handed to it (as root: a task image's WORKDIR may be anywhere, e.g. /app). */
  async prepareWorkdir(): Promise<void> {
    const workdir = shellQuote(this.workdir);
    const made = await this.runAs(
      bash(`mkdir -p ${workdir} && chown ${AGENT_USER}: ${workdir}`),
      { cwd: '/', timeoutMs: HOUSEKEEPING_TIMEOUT_MS },
      'admin',
    );
    if (made.exitCode !== 0)
      throw new SandboxError(`could not make the workdir ${this.workdir} in sandbox ${this.id}: ${made.stderr.trim()}`);
  }

  async makeDir(sandboxPath: string): Promise<void> {
    this.ensureAlive();
    const target = this.absolute(sandboxPath);
    const user = this.fileUser();
    await this.transfer(`make the directory ${target}`, () => this.deps.sdk.files.makeDir(target, { user }));
  }

  async resourcePath(relativePath: string): Promise<string> {
    this.ensureAlive();
    const normalized = path.posix.normalize(relativePath);
    if (normalized.startsWith('..') || path.posix.isAbsolute(normalized)) throw new SandboxError(`${relativePath} is not a resource`);
    let uploaded = this.resources.get(normalized);
    if (!uploaded) {
      uploaded = (async () => {
        const content = await readFile(path.join(this.deps.resourcesDir, normalized));
        const target = path.posix.join(RESOURCES_DIR, normalized);
        await this.transfer(`upload ${normalized}`, () =>
          this.deps.sdk.files.write(target, new Blob([new Uint8Array(content)]), { user: VERIFIER_USER }),
        );
        return target;
      })();
      this.resources.set(normalized, uploaded);
      // A failed upload is retried by the next caller.
      uploaded.catch(() => this.resources.delete(normalized));
    }
    return uploaded;
  }

  /** Where `program` is on the template's PATH (for now: the template's python3, node and opencode). */
  private lookUp(program: string): Promise<string> {
    let found = this.lookups.get(program);
    if (!found) {
      found = this.housekeeping(`command -v ${shellQuote(program)} || true`, AGENT_USER).then((stdout) => {
        const where = stdout.trim();
        if (!where.startsWith('/')) throw new SandboxError(`${program} is not installed in the template of sandbox ${this.id}`);
        return where;
      });
      this.lookups.set(program, found);
      found.catch(() => this.lookups.delete(program));
    }
    return found;
  }

  async pythonExecutable(): Promise<string> {
    this.ensureAlive();
    return this.lookUp('python3');
  }

  async binaryPath(binary: SandboxBinary): Promise<string> {
    this.ensureAlive();
    return this.lookUp(binary);
  }

  /** A template without opencode gets the version this server runs locally, installed as root with npm (needs internet). */
  async ensureBinary(binary: SandboxBinary): Promise<{ path: string; installed: boolean }> {
    this.ensureAlive();
    try {
      return { path: await this.lookUp(binary), installed: false };
    } catch (error) {
      if (binary !== 'opencode' || !(error instanceof SandboxError) || this.killed) throw error;
    }
    if (!this.deps.opencodeVersion) {
      throw new SandboxError(`opencode is not installed in template ${this.deps.template}: build it with \`opencode-env template build\``);
    }
    const pinned = `opencode-ai@${this.deps.opencodeVersion}`;
    const install = await this.runAs(
      // One retry, soon: without a route to npm's registry (allow_internet off) this fails in seconds, not minutes.
      bash(
        `npm install --global --no-audit --no-fund --loglevel=error --fetch-retries=1 --fetch-retry-mintimeout=2000 ` +
          `--fetch-retry-maxtimeout=10000 ${shellQuote(pinned)} >&2 && echo "$(npm prefix --global)/bin/opencode"`,
      ),
      { timeoutMs: INSTALL_TIMEOUT_MS },
      'admin',
    );
    const where = install.stdout.trim().split('\n').at(-1) ?? '';
    if (install.exitCode !== 0 || !where.startsWith('/')) {
      const why = install.timedOut ? `timed out after ${INSTALL_TIMEOUT_MS / 1000} s` : `failed (exit code ${install.exitCode})`;
      throw new SandboxError(
        `opencode is not installed in template ${this.deps.template}, and installing ${pinned} in the sandbox ${why}: ` +
          `${install.stderr.trim().slice(-1000) || 'no output'}. Build the template with \`opencode-env template build\` ` +
          '(then sandboxes start with it), or let the sandbox reach npm (allow_internet)',
      );
    }
    this.lookups.set(binary, Promise.resolve(where));
    return { path: where, installed: true };
  }

  /** The sandbox has no route to the server: the relay carries the agent's connections over its own stdin and stdout. */
  async openLlmChannel(accept: (connection: Duplex) => void): Promise<LlmChannel> {
    this.ensureAlive();
    const channel = await openRelayLlmChannel(this, accept);
    if (this.killPromise) {
      await channel.close();
      throw new SandboxError(`sandbox ${this.id} has been killed`);
    }
    this.channels.add(channel);
    return channel;
  }

  async prepareVerifier(): Promise<void> {
    this.ensureAlive();
    this.verifierReady = false;
    await Promise.allSettled([...this.processes].map((p) => p.kill()));
    // As root, after every process of the agent's user is gone, so nothing changes under these steps.
    const home = shellQuote(HOME_DIR);
    const script = [
      `if id -u ${AGENT_USER} >/dev/null 2>&1; then for i in 1 2 3 4 5 6 7 8 9 10; do pkill -KILL -u ${AGENT_USER} || break; sleep 0.05; done; fi`,
      // The agent may have made its home unreadable (chmod 000 ~), or replaced its home or workdir with a link or a file.
      `for d in ${home} ${shellQuote(this.workdir)}; do if [ -L "$d" ] || [ ! -d "$d" ]; then rm -rf "$d" && mkdir "$d" && chown ${AGENT_USER}: "$d"; fi; chmod 755 "$d"; done`,
      // Whatever the agent left at ~/logs goes; root makes it anew, and only root can write the reward dir.
      `rm -rf ${home}/logs && mkdir -m 755 ${home}/logs ${shellQuote(this.rewardDir)}`,
      `rm -rf ${VERIFIER_TMP} && mkdir -m 700 ${VERIFIER_TMP}`,
      // Test scripts written for one shared HOME write `$HOME/logs/verifier/reward.txt`: that still reaches the reward dir.
      `rm -rf ${VERIFIER_HOME}/logs && ln -s ${home}/logs ${VERIFIER_HOME}/logs`,
      // Harbor's paths: /logs/verifier is the reward dir, /tests starts empty (root's). Emptied rather than removed, and
      // /logs kept, in case either is a mount point of the template's.
      `mkdir -p ${HARBOR_TESTS_DIR} /logs && chmod 755 ${HARBOR_TESTS_DIR} /logs && find ${HARBOR_TESTS_DIR} -mindepth 1 -delete`,
      `rm -rf ${HARBOR_REWARD_DIR} && ln -s ${shellQuote(this.rewardDir)} ${HARBOR_REWARD_DIR}`,
    ].join(' && ');
    try {
      await this.deps.sdk.commands.run(`set -e; ${script}`, { user: VERIFIER_USER, timeoutMs: HOUSEKEEPING_TIMEOUT_MS });
    } catch (error) {
      throw this.failure('prepare the verifier', error, 'command');
    }
    this.verifierReady = true;
  }

  /**
   * A file transfer: idempotent (a read, a stat, a listing, an overwrite, a mkdir can be sent again), so retried with
   * backoff while E2B is busy, rate-limited or unreachable, and never once this sandbox has been killed.
   */
  private async transfer<T>(what: string, operation: () => Promise<T>): Promise<T> {
    this.lifetime.touch();
    try {
      return await withRetries(operation, {
        isRetryable: (error) => !this.killed && isTransientE2bError(error, 'file'),
        onRetry: (error, attempt, delayMs) =>
          this.deps.logger.warn({ sandbox: this.id, what, attempt, delayMs, error }, 'E2B file transfer failed; retrying'),
        ...(this.deps.retryPolicy ? { policy: this.deps.retryPolicy } : {}),
      });
    } catch (error) {
      // Ours already says what is wrong (a missing file, a directory where a file was asked for).
      if (error instanceof SandboxError) throw error;
      throw this.failure(what, error, 'file');
    }
  }

  /** A SandboxError naming what failed, what happened and what to do, from whatever the SDK threw (kept as the cause). */
  private failure(what: string, error: unknown, step: E2bStep): SandboxError {
    return sandboxErrorFromE2b(error, { step, what, sandboxId: this.id, killedByUs: this.killed });
  }

  kill(): Promise<void> {
    this.killPromise ??= (async () => {
      this.lifetime.stop();
      await Promise.allSettled([...this.channels].map((channel) => channel.close()));
      try {
        // Killing the VM ends every process; their streams break, which settles each one's `exited`.
        await this.deps.sdk.kill();
      } catch (error) {
        this.deps.logger.warn({ sandbox: this.id, error }, 'could not kill an E2B sandbox; it ends when its lifetime does');
      } finally {
        // Bounded: a sandbox E2B could not kill may still be streaming.
        let timer: NodeJS.Timeout | undefined;
        const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, KILL_GRACE_MS)));
        await Promise.race([Promise.allSettled([...this.processes].map((p) => p.exited)), grace]);
        clearTimeout(timer);
        this.deps.onKilled(this);
      }
    })();
    return this.killPromise;
  }
}

function entryType(type: FileType | undefined): FileEntry['type'] {
  switch (type) {
    case FileType.FILE:
      return 'file';
    case FileType.DIR:
      return 'dir';
    case FileType.SYMLINK:
      return 'symlink';
    default:
      return 'other';
  }
}
