import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { LocalSandbox } from '../../../src/sandbox/local/local-sandbox.js';
import type { SandboxProcess, SandboxProvider, StartOptions } from '../../../src/sandbox/types.js';
import { ConnectFailure } from './connect-codec.js';
import { StandInProcess, type ProcessConfig } from './sandbox-process.js';

/** The envd version the stand-in claims: new enough for every feature SDK 2.51.0 gates on a version. */
export const STAND_IN_ENVD_VERSION = '0.6.13';
const FIRST_PID = 1000;

/**
 * The users of a stand-in sandbox, as in E2B's templates: `user` (unprivileged, the default when a request names
 * none, as envd >= 0.4 does) and `root`. Root's commands keep the administering part of root's power (see
 * `LocalSandbox.startAsRoot`) and alone write /opt and /root; `user`'s run as the sandbox's unprivileged uid.
 */
export const SANDBOX_USERS = ['user', 'root'] as const;
export type SandboxUser = (typeof SANDBOX_USERS)[number];
export const DEFAULT_USER: SandboxUser = 'user';
/** Root-owned directories every stand-in sandbox has, with their modes (E2B's /opt and /root). */
export const ROOT_OWNED_DIRS = [
  { path: '/opt', mode: 0o755 },
  { path: '/root', mode: 0o700 },
  // Where E2B's prepareVerifier makes Harbor's /tests and /logs/verifier (a template's / is root's).
  { path: '/tests', mode: 0o755 },
  { path: '/logs', mode: 0o755 },
  // The WORKDIR of most Harbor task images (and of the examples'): E2B's sandbox from such a template has it.
  { path: '/app', mode: 0o755 },
];

/** A request's user (envd's `Authorization: Basic base64("<user>:")` or `username` query), checked; absent means the default. */
export function sandboxUser(name: string | null | undefined): SandboxUser {
  if (!name) return DEFAULT_USER;
  if ((SANDBOX_USERS as readonly string[]).includes(name)) return name as SandboxUser;
  throw new ConnectFailure('invalid_argument', `error looking up user '${name}': user: unknown user ${name}`);
}

/** One user's view of a sandbox: how it starts processes and where its relative paths start. */
export interface SandboxSession {
  user: SandboxUser;
  homeDir: string;
  start(argv: string[], options?: StartOptions): Promise<SandboxProcess>;
}

/** What a test can see of one stand-in sandbox. */
export interface StandInSandboxInfo {
  sandboxId: string;
  templateId: string;
  metadata: Record<string, string>;
  envs: Record<string, string>;
  /** What create asked for (`allow_internet_access`); stand-in sandboxes are cut off either way. */
  allowInternetAccess: boolean;
  /** Lifetime in seconds as last set by create, connect or setTimeout. */
  timeoutS: number;
  startedAt: Date;
  endAt: Date;
  state: 'running' | 'killed';
  /** Why it ended: `api` (DELETE), `timeout` (its lifetime ran out), `external` (killed by the test), `close`. */
  endedBy: 'api' | 'timeout' | 'external' | 'close' | null;
  /** Processes that have not ended yet. */
  runningPids: number[];
}

function newSandboxId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  return Array.from(randomBytes(20), (byte) => alphabet[byte % alphabet.length]).join('');
}

/**
 * A template without opencode whose npm installs it from a local cache (there is no registry here): `npm install
 * --global opencode-ai@<version>` links this project's opencode binary and records the version asked for;
 * `npm prefix --global` names where. It is root's npm (first on root's PATH), as the install runs as root.
 */
export const NPM_CACHE_TEMPLATE = 'base-with-npm-cache';
const STAND_IN_NPM = `#!/bin/sh
case "$1" in
  prefix) echo /opt/npm-global ;;
  install)
    for arg; do
      case "$arg" in
        opencode-ai@*) mkdir -p /opt/npm-global/bin && ln -sf "$OPENCODE_BINARY" /opt/npm-global/bin/opencode && echo "$arg" >> /opt/npm-global/installed && exit 0 ;;
      esac
    done
    echo "stand-in npm: only opencode-ai@<version> is in the cache" >&2; exit 1 ;;
  *) echo "stand-in npm: unsupported: $*" >&2; exit 1 ;;
esac
`;

async function installStandInNpm(sandbox: LocalSandbox): Promise<void> {
  const opencode = await sandbox.binaryPath('opencode');
  const script = [
    'mkdir -p /opt/npm-cache/bin',
    `cat > /opt/npm-cache/bin/npm <<'NPM'\n${STAND_IN_NPM.replace('"$OPENCODE_BINARY"', opencode)}NPM`,
    'chmod 755 /opt/npm-cache/bin/npm',
    `echo 'export PATH="/opt/npm-cache/bin:$PATH"' > /root/.profile`,
  ].join('\n');
  const setup = await sandbox.startAsRoot(['bash', '-c', script], { env: { HOME: '/root' } });
  await setup.endInput();
  const { exitCode } = await setup.exited;
  if (exitCode !== 0) throw new Error(`the stand-in could not set up its npm cache (exit ${exitCode})`);
}

/** One sandbox: a sandbox of this project's local backend (bubblewrap, loopback only), with envd's process table. */
export class StandInSandbox {
  readonly sandboxId = newSandboxId();
  readonly envdAccessToken = randomBytes(16).toString('hex');
  readonly startedAt = new Date();
  endAt: Date;
  timeoutS: number;
  endedBy: StandInSandboxInfo['endedBy'] = null;
  allowInternetAccess = true;
  private lifetimeTimer: NodeJS.Timeout | null = null;
  readonly processes = new Map<number, StandInProcess>();
  private nextPid = FIRST_PID;
  /** Closes the envd streams open on this sandbox (a dead sandbox's connections drop, as through E2B's proxy). */
  readonly openStreams = new Set<() => void>();

  constructor(
    readonly sandbox: LocalSandbox,
    readonly templateId: string,
    readonly metadata: Record<string, string>,
    readonly envs: Record<string, string>,
    timeoutS: number,
    private readonly onExpire: (sandbox: StandInSandbox) => void,
  ) {
    this.timeoutS = timeoutS;
    this.endAt = new Date();
    this.setLifetime(timeoutS);
  }

  get alive(): boolean {
    return this.endedBy === null;
  }

  /** Like E2B: the sandbox now ends `seconds` from now, whether that extends or shortens its life. */
  setLifetime(seconds: number): void {
    this.timeoutS = seconds;
    this.endAt = new Date(Date.now() + seconds * 1000);
    if (this.lifetimeTimer) clearTimeout(this.lifetimeTimer);
    this.lifetimeTimer = setTimeout(() => this.onExpire(this), seconds * 1000);
    this.lifetimeTimer.unref();
  }

  /** `user` as envd runs things for it: its HOME, USER and LOGNAME (the sandbox's envs and a request's own win). */
  as(user: SandboxUser): SandboxSession {
    if (user === 'user') return { user, homeDir: this.sandbox.homeDir, start: (argv, options) => this.sandbox.start(argv, options) };
    const identity = { HOME: '/root', USER: 'root', LOGNAME: 'root' };
    return {
      user,
      homeDir: '/root',
      start: (argv, options = {}) => this.sandbox.startAsRoot(argv, { ...options, env: { ...identity, ...options.env } }),
    };
  }

  startProcess(config: ProcessConfig, stdin: boolean, user: SandboxUser = DEFAULT_USER): StandInProcess {
    const pid = this.nextPid++;
    const session = this.as(user);
    const cwd = path.posix.resolve(session.homeDir, config.cwd ?? '');
    const process = new StandInProcess(pid, config, stdin, (onStdout, onStderr) =>
      session.start([config.cmd, ...config.args], { cwd, env: { ...this.envs, ...config.envs }, onStdout, onStderr }),
    );
    this.processes.set(pid, process);
    void process.ended.then(() => this.processes.delete(pid));
    return process;
  }

  async kill(reason: NonNullable<StandInSandboxInfo['endedBy']>): Promise<void> {
    if (this.endedBy !== null) return;
    this.endedBy = reason;
    if (this.lifetimeTimer) clearTimeout(this.lifetimeTimer);
    for (const close of this.openStreams) close();
    await this.sandbox.kill();
  }

  info(): StandInSandboxInfo {
    return {
      sandboxId: this.sandboxId,
      templateId: this.templateId,
      metadata: { ...this.metadata },
      envs: { ...this.envs },
      allowInternetAccess: this.allowInternetAccess,
      timeoutS: this.timeoutS,
      startedAt: this.startedAt,
      endAt: this.endAt,
      state: this.alive ? 'running' : 'killed',
      endedBy: this.endedBy,
      runningPids: [...this.processes.keys()],
    };
  }
}

/** Every sandbox the stand-in has made, dead ones included (envd answers 502 for those, the API 404). */
export class SandboxRegistry {
  private readonly sandboxes = new Map<string, StandInSandbox>();
  private readonly kills = new Set<Promise<void>>();

  constructor(
    private readonly provider: SandboxProvider,
    private readonly templatesWithoutOpencode: string[],
  ) {}

  async create(options: {
    templateId: string;
    metadata: Record<string, string>;
    envs: Record<string, string>;
    timeoutS: number;
    allowInternetAccess: boolean;
  }): Promise<StandInSandbox> {
    const sandbox = await this.provider.create({ label: 'e2b-standin', metadata: options.metadata });
    if (!(sandbox instanceof LocalSandbox)) throw new Error('the stand-in runs its sandboxes on the local backend');
    // envd runs commands in a login shell, whose /etc/profile sets PATH: a template with opencode puts it on PATH the
    // way an image can, from the user's profile (node is the system one).
    if (!this.templatesWithoutOpencode.includes(options.templateId)) {
      const binDir = path.posix.dirname(await sandbox.binaryPath('opencode'));
      await sandbox.writeFile(path.posix.join(sandbox.homeDir, '.profile'), `export PATH="${binDir}:$PATH"\n`);
    }
    if (options.templateId === NPM_CACHE_TEMPLATE) await installStandInNpm(sandbox);
    const standIn = new StandInSandbox(sandbox, options.templateId, options.metadata, options.envs, options.timeoutS, (expired) => {
      void this.kill(expired, 'timeout');
    });
    standIn.allowInternetAccess = options.allowInternetAccess;
    this.sandboxes.set(standIn.sandboxId, standIn);
    return standIn;
  }

  get(sandboxId: string): StandInSandbox | undefined {
    return this.sandboxes.get(sandboxId);
  }

  /** A live sandbox, or undefined for unknown and dead ones. */
  live(sandboxId: string): StandInSandbox | undefined {
    const found = this.sandboxes.get(sandboxId);
    return found?.alive ? found : undefined;
  }

  all(): StandInSandbox[] {
    return [...this.sandboxes.values()];
  }

  kill(sandbox: StandInSandbox, reason: NonNullable<StandInSandboxInfo['endedBy']>): Promise<void> {
    const killing = sandbox.kill(reason);
    this.kills.add(killing);
    void killing.finally(() => this.kills.delete(killing));
    return killing;
  }

  async killAll(): Promise<void> {
    await Promise.all(this.all().map((sandbox) => this.kill(sandbox, 'close')));
    await Promise.all([...this.kills]);
    await this.provider.killAll();
  }
}
