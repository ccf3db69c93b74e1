import { chmod, chown, mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../../config.js';
import type { Logger } from '../../log.js';
import type { Sandbox, SandboxCreateOptions, SandboxProvider } from '../types.js';
import { probeHost, type HostCapabilities } from './host-probe.js';
import { BubblewrapIsolation, PlainProcessIsolation, SANDBOX_UID, type Isolation } from './isolation.js';
import { LocalSandbox, newSandboxId } from './local-sandbox.js';

interface LocalSetup {
  host: HostCapabilities;
  isolation: Isolation;
}

export interface LocalProviderOptions {
  sandbox: Config['sandbox'];
  pythonExecutable: string;
  resourcesDir: string;
  /** More host directories to hide from sandboxes (e.g. the trace store). */
  hiddenPaths?: string[];
  logger: Logger;
}

export class IsolationUnavailableError extends Error {}

/** Sandboxes as directories on this machine, confined with bubblewrap when it is available. */
export class LocalSandboxProvider implements SandboxProvider {
  readonly backend = 'local' as const;
  private setupPromise: Promise<LocalSetup> | null = null;
  private readonly live = new Set<LocalSandbox>();

  constructor(private readonly options: LocalProviderOptions) {}

  private setup(): Promise<LocalSetup> {
    this.setupPromise ??= this.chooseIsolation();
    return this.setupPromise;
  }

  private async chooseIsolation(): Promise<LocalSetup> {
    const { sandbox, logger } = this.options;
    const host = await probeHost(this.options.pythonExecutable, sandbox.network === 'isolated');
    const python = 'error' in host.python ? null : host.python;
    if (!python) logger.warn({ problem: (host.python as { error: string }).error }, 'execute_python will be unavailable');
    const policy = {
      network: sandbox.network,
      limits: sandbox.limits,
      resourcesDir: this.options.resourcesDir,
      runtimePaths: python?.prefixes ?? [],
      hiddenPaths: [sandbox.rootDir, ...(this.options.hiddenPaths ?? [])],
    };
    if (!host.prlimit) logger.warn('prlimit not found: sandbox processes run without resource limits');
    if (process.getuid?.() === 0 && !host.setpriv) logger.warn('running as root without setpriv: sandbox processes keep root privileges');

    const bwrapUsable = host.bwrap !== null && host.bwrapProblem === null;
    if (sandbox.isolation !== 'none' && bwrapUsable) {
      logger.debug({ bwrap: host.bwrap, network: sandbox.network }, 'sandbox isolation: bubblewrap');
      return { host, isolation: new BubblewrapIsolation(host.bwrap!, host, policy) };
    }
    const why = host.bwrap === null ? 'bubblewrap (bwrap) is not installed' : `bubblewrap does not work here: ${host.bwrapProblem}`;
    if (sandbox.isolation === 'bwrap') {
      throw new IsolationUnavailableError(`OPENCODE_ENV_ISOLATION=bwrap but ${why}`);
    }
    if (sandbox.isolation === 'auto') {
      logger.warn(
        `${why}; sandboxes run as plain child processes without filesystem isolation. ` +
          'Install bubblewrap (e.g. apt-get install bubblewrap) for isolation, or set OPENCODE_ENV_ISOLATION=none to silence this.',
      );
    }
    return { host, isolation: new PlainProcessIsolation(host, policy) };
  }

  async describeIsolation(): Promise<string> {
    return (await this.setup()).isolation.name;
  }

  async create(options: SandboxCreateOptions = {}): Promise<Sandbox> {
    const { host, isolation } = await this.setup();
    const id = newSandboxId(options.label);
    const root = path.join(this.options.sandbox.rootDir, `opencode-env-${id}`);
    const dirs = { root, home: path.join(root, 'home'), tmp: path.join(root, 'tmp') };
    // Plain processes under another uid must traverse the root to reach their home; nobody may list it.
    await mkdir(root, { recursive: true, mode: 0o700 });
    if (isolation.dropsPrivileges && isolation.name === 'none') await chmod(root, 0o711);
    for (const dir of [dirs.home, path.join(dirs.home, 'workdir'), dirs.tmp]) {
      await mkdir(dir, { mode: 0o755 });
      if (isolation.dropsPrivileges) await chown(dir, SANDBOX_UID, SANDBOX_UID);
    }
    await chmod(dirs.tmp, 0o1777);
    const python = 'error' in host.python ? null : host.python;
    const sandbox = new LocalSandbox({
      id,
      dirs,
      isolation,
      pythonExecutable: python?.executable ?? null,
      pythonProblem: 'error' in host.python ? host.python.error : null,
      onKilled: (s) => this.live.delete(s),
    });
    this.live.add(sandbox);
    this.options.logger.debug({ sandbox: id, isolation: isolation.name, dir: root }, 'sandbox created');
    return sandbox;
  }

  async killAll(): Promise<void> {
    await Promise.allSettled([...this.live].map((s) => s.kill()));
  }
}
