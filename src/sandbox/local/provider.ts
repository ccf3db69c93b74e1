import { chmod, chown, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SandboxError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { isAlive } from '../../util/process-tree.js';
import type { Sandbox, SandboxBinary, SandboxCreateOptions, SandboxProvider } from '../types.js';
import { probeHost, type HostCapabilities } from './host-probe.js';
import { BubblewrapIsolation, canDropPrivileges, PlainProcessIsolation, SANDBOX_UID, type Isolation } from './isolation.js';
import { LocalSandbox, newSandboxId } from './local-sandbox.js';
import type { LocalSandboxSettings } from './settings.js';

interface LocalSetup {
  host: HostCapabilities;
  isolation: Isolation;
}

export interface LocalProviderOptions {
  settings: LocalSandboxSettings;
  /** The project's resources/ directory, mounted read-only into sandboxes. */
  resourcesDir: string;
  /** More host directories to hide from sandboxes (e.g. the trace store). */
  hiddenPaths?: string[];
  /** Host binaries to make available inside sandboxes (opencode, node). */
  binaries?: Partial<Record<SandboxBinary, string>>;
  logger: Logger;
}

const SANDBOX_DIR_PREFIX = 'opencode-env-';
/** Records which server process owns a sandbox directory, so orphans can be recognised later. */
const OWNER_FILE = 'owner.json';

/** Sandboxes as directories on this machine, isolated with bubblewrap when it is available. */
export class LocalSandboxProvider implements SandboxProvider {
  readonly backend = 'local' as const;
  private setupPromise: Promise<LocalSetup> | null = null;
  private readonly live = new Set<LocalSandbox>();

  constructor(private readonly options: LocalProviderOptions) {}

  async isolation(): Promise<string> {
    return (await this.setup()).isolation.name;
  }

  private setup(): Promise<LocalSetup> {
    this.setupPromise ??= (async () => {
      const [setup] = await Promise.all([this.chooseIsolation(), this.removeOrphanedSandboxes()]);
      return setup;
    })();
    return this.setupPromise;
  }

  /** Deletes sandbox directories left by a server that was killed before it could clean up. */
  private async removeOrphanedSandboxes(): Promise<void> {
    const root = this.options.settings.rootDir;
    const entries = await readdir(root).catch(() => [] as string[]);
    for (const entry of entries.filter((e) => e.startsWith(SANDBOX_DIR_PREFIX))) {
      const owner = await readFile(path.join(root, entry, OWNER_FILE), 'utf8').catch(() => null);
      const ownerPid = owner ? Number((JSON.parse(owner) as { pid?: unknown }).pid) : NaN;
      if (Number.isInteger(ownerPid) && ownerPid !== process.pid && !isAlive(ownerPid)) {
        this.options.logger.info({ dir: entry, ownerPid }, 'removing sandbox left behind by a server that is gone');
        await rm(path.join(root, entry), { recursive: true, force: true }).catch(() => undefined);
      }
    }
  }

  private async chooseIsolation(): Promise<LocalSetup> {
    const { settings: sandbox, logger } = this.options;
    const host = await probeHost(sandbox.pythonExecutable, sandbox.network === 'isolated');
    const python = 'error' in host.python ? null : host.python;
    if (!python) logger.warn({ problem: (host.python as { error: string }).error }, 'execute_python will be unavailable');
    const policy = {
      network: sandbox.network,
      limits: sandbox.limits,
      resourcesDir: this.options.resourcesDir,
      runtimePaths: python?.prefixes ?? [],
      hiddenPaths: [sandbox.rootDir, ...(this.options.hiddenPaths ?? [])],
      binaries: this.options.binaries ?? {},
    };
    if (!host.prlimit) logger.warn('prlimit not found: sandbox processes run without resource limits');
    if (process.getuid?.() === 0 && !host.setpriv) logger.warn('running as root without setpriv: sandbox processes keep root privileges');

    const bwrapUsable = host.bwrap !== null && host.bwrapProblem === null;
    const build = (dropPrivileges: boolean): Isolation =>
      sandbox.isolation !== 'none' && bwrapUsable
        ? new BubblewrapIsolation(host.bwrap!, host, policy, dropPrivileges)
        : new PlainProcessIsolation(host, policy, dropPrivileges);

    if (sandbox.isolation !== 'none' && !bwrapUsable) {
      const why = host.bwrap === null ? 'bubblewrap (bwrap) is not installed' : `bubblewrap does not work here: ${host.bwrapProblem}`;
      if (sandbox.isolation === 'bwrap') throw new SandboxError(`OPENCODE_ENV_ISOLATION=bwrap but ${why}`);
      logger.warn(
        `${why}; sandboxes run as plain child processes without filesystem isolation. ` +
          'Install bubblewrap (e.g. apt-get install bubblewrap) for isolation, or set OPENCODE_ENV_ISOLATION=none to silence this.',
      );
    }

    let isolation = build(canDropPrivileges(host));
    if (isolation.dropsPrivileges && python) {
      const problem = await this.checkInterpreterRuns(isolation, python.executable);
      if (problem) {
        logger.warn(
          { problem },
          `the Python interpreter, the project's resources or the opencode and node binaries are not accessible to uid ${SANDBOX_UID}; sandbox processes run as root instead. ` +
            'Install Python and opencode-env where every user can read them to avoid this.',
        );
        isolation = build(false);
      }
    }
    logger.debug(
      { isolation: isolation.name, network: sandbox.network, unprivileged: isolation.dropsPrivileges },
      'sandbox isolation chosen',
    );
    return { host, isolation };
  }

  /** Runs the interpreter, reads the driver and checks the binaries exactly as a sandbox would; returns what went wrong. */
  private async checkInterpreterRuns(isolation: Isolation, python: string): Promise<string | null> {
    const probe = await this.createWith(isolation, { python: { executable: python }, pythonProblem: null }, { label: 'selfcheck' });
    try {
      const driver = await probe.resourcePath('python/driver.py');
      const result = await probe.run([python, '-c', 'import sys; open(sys.argv[1]).close()', driver], { timeoutMs: 15_000 });
      if (result.exitCode !== 0) return result.stderr.trim() || `exit code ${result.exitCode}`;
      const binaries = await Promise.all(
        Object.keys(this.options.binaries ?? {}).map((binary) => probe.binaryPath(binary as SandboxBinary)),
      );
      if (binaries.length === 0) return null;
      const check = await probe.run(
        ['sh', '-c', 'for f in "$@"; do test -x "$f" || { echo "cannot execute $f"; exit 1; }; done', 'sh', ...binaries],
        { timeoutMs: 15_000 },
      );
      return check.exitCode === 0 ? null : check.stdout.trim() || `exit code ${check.exitCode}`;
    } finally {
      await probe.kill();
    }
  }

  async create(options: SandboxCreateOptions = {}): Promise<Sandbox> {
    const { host, isolation } = await this.setup();
    const python = 'error' in host.python ? null : host.python;
    const pythonProblem = 'error' in host.python ? host.python.error : null;
    return this.createWith(isolation, { python, pythonProblem }, options);
  }

  private async createWith(
    isolation: Isolation,
    interpreter: { python: { executable: string } | null; pythonProblem: string | null },
    options: SandboxCreateOptions,
  ): Promise<LocalSandbox> {
    const id = newSandboxId(options.label);
    const root = path.join(this.options.settings.rootDir, `${SANDBOX_DIR_PREFIX}${id}`);
    const dirs = { root, home: path.join(root, 'home'), tmp: path.join(root, 'tmp'), channel: path.join(root, 'channel') };
    // Plain processes under another uid must traverse the root to reach their home; nobody may list it.
    await mkdir(root, { recursive: true, mode: 0o700 });
    if (isolation.dropsPrivileges && isolation.name === 'none') await chmod(root, 0o711);
    for (const dir of [dirs.home, path.join(dirs.home, 'workdir'), dirs.tmp]) {
      await mkdir(dir, { mode: 0o755 });
      if (isolation.dropsPrivileges) await chown(dir, SANDBOX_UID, SANDBOX_UID);
    }
    await chmod(dirs.tmp, 0o1777);
    await mkdir(dirs.channel, { mode: 0o755 });
    const owner = { pid: process.pid, createdAt: new Date().toISOString(), metadata: options.metadata ?? {} };
    await writeFile(path.join(root, OWNER_FILE), JSON.stringify(owner));
    const sandbox = new LocalSandbox({
      id,
      dirs,
      isolation,
      pythonExecutable: interpreter.python?.executable ?? null,
      pythonProblem: interpreter.pythonProblem,
      env: options.env ?? {},
      lifetimeMs: options.lifetimeMs ?? null,
      onKilled: (s) => this.live.delete(s),
    });
    this.live.add(sandbox);
    this.options.logger.debug(
      {
        sandbox: id,
        isolation: isolation.name,
        dir: root,
        ...(options.template ? { template: options.template } : {}),
        metadata: owner.metadata,
      },
      'sandbox created',
    );
    return sandbox;
  }

  async killAll(): Promise<void> {
    await Promise.allSettled([...this.live].map((s) => s.kill()));
  }
}
