import { chmod, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SandboxError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { isAlive } from '../../util/process-tree.js';
import type { Sandbox, SandboxBinary, SandboxCreateOptions, SandboxProvider } from '../types.js';
import { probeHost, type HostCapabilities } from './host-probe.js';
import { probeCgroups, type CgroupHost, type SandboxCgroup } from './cgroups.js';
import {
  BubblewrapIsolation,
  canDropPrivileges,
  PlainProcessIsolation,
  SANDBOX_UID,
  type Isolation,
  type SandboxDirs,
} from './isolation.js';
import { LocalSandbox, newSandboxId } from './local-sandbox.js';
import { createNetworkNamespace, removeNetworkNamespace, sharedNetworkProblem } from './netns.js';
import { makeDir, removeNoFollow } from './safe-fs.js';
import { mountsUnder, mountTmpfs, tmpfsProblem, unmount } from './tmpfs.js';
import { startReaper } from './reaper.js';
import { UID_LOCK_DIR, UidAllocator, type UidLease } from './uids.js';
import { seccompSupported } from './seccomp.js';
import type { LocalSandboxSettings } from './settings.js';

interface LocalSetup {
  host: HostCapabilities;
  isolation: Isolation;
  containment: Containment;
}

/** What the host can give each sandbox beyond its isolation; each is null where it cannot, with the reason in `missing`. */
interface Containment {
  /** Whether sandbox processes cannot lower their oom_score_adj of 1000 (otherwise they can, down to 0). */
  oomScoreAdjPinned: boolean;
  uids: UidAllocator | null;
  cgroups: CgroupHost | null;
  tmpfs: boolean;
  /** Why a protection is unavailable, by name, for the setup log. */
  missing: Record<string, string>;
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
  /**
   * Off by default, and never set when serving: for offline stand-ins of remote backends whose sandboxes have a root
   * user (the E2B stand-in). Each sandbox then allows `LocalSandbox.startAsRoot`, and gets `dirs` at their sandbox
   * paths: a fresh host directory each, owned by the server's uid with `mode`, visible to every command, writable by
   * root commands only (e.g. `/opt` 0755 and `/root` 0700). Needs bubblewrap.
   */
  rootUser?: { dirs: { path: string; mode: number }[] };
  /**
   * Off by default, and never set when serving: for offline stand-ins of remote backends whose sandboxes are one VM
   * (the E2B stand-in). Every command of a sandbox then shares one network namespace of the sandbox's own, made at
   * creation and removed at kill (netns.ts): loopback only, so a listener one command opens on 127.0.0.1 is reachable
   * by later ones, and still nothing outside. Needs bubblewrap, the `isolated` network and a root server.
   */
  sharedNetwork?: boolean;
}

const SANDBOX_DIR_PREFIX = 'opencode-env-';
/** Records which server process owns a sandbox directory, so orphans can be recognised later. */
const OWNER_FILE = 'owner.json';

/**
 * Whether the launcher's oom_score_adj of 1000 is pinned: the kernel lets a process lower its own value down to the
 * last one written with CAP_SYS_RESOURCE (and to 0 when none was), so only a server with that capability pins it.
 */
async function canPinOomScoreAdj(): Promise<boolean> {
  const status = await readFile('/proc/self/status', 'utf8').catch(() => '');
  const effective = /^CapEff:\s+([0-9a-f]+)/m.exec(status)?.[1];
  return effective !== undefined && ((BigInt(`0x${effective}`) >> 24n) & 1n) === 1n; // CAP_SYS_RESOURCE
}

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
      // Orphans' processes die with their uids and cgroups before their directories (and tmpfs mounts) go.
      const containment = this.probeContainment();
      const [setup] = await Promise.all([this.chooseIsolation(containment), containment.then(() => this.removeOrphanedSandboxes())]);
      this.reportProtections(setup);
      return setup;
    })();
    return this.setupPromise;
  }

  /** Finds which of per-sandbox uids, cgroups and a size-capped /tmp this host allows, and removes what dead servers left. */
  private async probeContainment(): Promise<Containment> {
    const missing: Record<string, string> = {};
    const allocator = new UidAllocator();
    const [uidProblem, cgroups, oomScoreAdjPinned] = await Promise.all([allocator.problem(), probeCgroups(), canPinOomScoreAdj()]);
    if (!oomScoreAdjPinned) missing['pinned oom_score_adj'] = 'without CAP_SYS_RESOURCE, sandbox processes can lower theirs from 1000 to 0';
    if (uidProblem) missing['per-sandbox uids'] = uidProblem;
    if ('problem' in cgroups) missing['cgroup memory and pids limits'] = cgroups.problem;
    const tmpProblem = tmpfsProblem();
    if (tmpProblem) missing['size-capped /tmp'] = tmpProblem;
    const containment: Containment = {
      oomScoreAdjPinned,
      uids: uidProblem ? null : allocator,
      cgroups: 'host' in cgroups ? cgroups.host : null,
      tmpfs: tmpProblem === null,
      missing,
    };
    if (process.getuid?.() === 0) startReaper(this.options.settings.rootDir, UID_LOCK_DIR, containment.cgroups?.parents ?? []);
    const [uidsReclaimed, groupsRemoved] = await Promise.all([
      containment.uids?.reclaimOrphans() ?? 0,
      containment.cgroups?.removeOrphans() ?? 0,
    ]);
    if (uidsReclaimed + groupsRemoved > 0) {
      this.options.logger.info({ uidsReclaimed, groupsRemoved }, 'freed sandbox uids and cgroups left behind by servers that are gone');
    }
    return containment;
  }

  /** One line with what protects the host and other sandboxes from each sandbox here, and one naming what does not. */
  private reportProtections({ isolation, containment }: LocalSetup): void {
    const missing = { ...containment.missing };
    if (!isolation.dropsPrivileges) missing['per-sandbox uids'] ??= 'sandbox processes keep the server’s uid';
    const perSandboxUid = isolation.dropsPrivileges && containment.uids !== null;
    // Without a uid of its own the verifier differs from the agent only by HOME, /tmp and environment.
    if (!perSandboxUid) missing['verifier uid'] = 'verifier commands run under the agent’s uid, with their own HOME, /tmp and environment';
    const cgroups = containment.cgroups;
    this.options.logger.info(
      {
        isolation: isolation.name,
        perSandboxUid,
        cgroup: cgroups ? `${cgroups.version} ${cgroups.controllers.join('+')}` : null,
        oomScoreAdj: containment.oomScoreAdjPinned ? '1000, pinned' : '1000',
        tmpSizeCap: containment.tmpfs,
        // No quota on the home (it would need a quota-enabled filesystem): each file is capped by RLIMIT_FSIZE instead.
        diskQuota: false,
      },
      'sandbox protections',
    );
    if (Object.keys(missing).length === 0) return;
    const fallback = cgroups ? '' : '; sandboxes are limited by prlimit only (RLIMIT_NPROC per uid, RLIMIT_FSIZE, RLIMIT_CPU)';
    this.options.logger.warn({ missing }, `some sandbox protections are unavailable here${fallback}`);
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
        for (const mountPoint of await mountsUnder(path.join(root, entry))) await unmount(mountPoint).catch(() => undefined);
        await removeNoFollow(path.join(root, entry)).catch(() => undefined);
      }
    }
  }

  private async chooseIsolation(containmentProbe: Promise<Containment>): Promise<LocalSetup> {
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
      seccomp: this.seccompUsable(host),
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

    const containment = await containmentProbe;
    let isolation = build(canDropPrivileges(host));
    if (isolation.dropsPrivileges && isolation.name === 'none') {
      // Plain processes of other uids go through it to their home (each sandbox's own directory is 0711).
      await mkdir(sandbox.rootDir, { recursive: true });
      const mode = (await stat(sandbox.rootDir)).mode & 0o7777;
      if ((mode & 0o001) === 0) await chmod(sandbox.rootDir, mode | 0o001);
    }
    if (isolation.dropsPrivileges && python) {
      const problem = await this.checkInterpreterRuns(isolation, containment, python.executable);
      if (problem) {
        logger.warn(
          { problem },
          `the Python interpreter, the project's resources, the opencode and node binaries or the sandbox directory (OPENCODE_ENV_SANDBOX_DIR) are not accessible to sandbox uids; sandbox processes run as root instead. ` +
            'Install Python and opencode-env where every user can read them to avoid this.',
        );
        isolation = build(false);
      }
    }
    logger.debug(
      { isolation: isolation.name, network: sandbox.network, unprivileged: isolation.dropsPrivileges },
      'sandbox isolation chosen',
    );
    return { host, isolation, containment };
  }

  /** Whether sandboxes get the seccomp filter: wherever bubblewrap is used on an architecture the filter has tables for. */
  private seccompUsable(host: HostCapabilities): boolean {
    if (this.options.settings.isolation === 'none' || host.bwrap === null || host.bwrapProblem !== null) return false;
    if (seccompSupported()) return true;
    this.options.logger.warn(`no seccomp filter for this architecture (${process.arch}): sandboxes run without a syscall filter`);
    return false;
  }

  /** Runs the interpreter, reads the driver and checks the binaries exactly as a sandbox would; returns what went wrong. */
  private async checkInterpreterRuns(isolation: Isolation, containment: Containment, python: string): Promise<string | null> {
    const interpreter = { python: { executable: python }, pythonProblem: null };
    const probe = await this.createWith(isolation, containment, interpreter, { label: 'selfcheck' });
    try {
      const driver = await probe.resourcePath('python/driver.py');
      const result = await probe.run([python, '-c', 'import sys; open(sys.argv[1]).close()', driver], { timeoutMs: 15_000 });
      if (result.exitCode !== 0) return result.stderr.trim() || `exit code ${result.exitCode}`;
      // Plain processes reach their home and /tmp through host paths: every directory above must be searchable.
      // Still better than root, so this only warns.
      const reachable = await probe.run(['sh', '-c', 'touch "$HOME/.probe" "$TMPDIR/.probe"'], { timeoutMs: 15_000 });
      if (reachable.exitCode !== 0) {
        this.options.logger.warn(
          { problem: reachable.stderr.trim() },
          'sandbox uids cannot reach their home and /tmp: make OPENCODE_ENV_SANDBOX_DIR and every directory above it searchable by others (chmod o+x)',
        );
      }
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
    if (options.workdir !== undefined) throw new SandboxError(`the local backend's workdir is fixed; it cannot be ${options.workdir}`);
    const { host, isolation, containment } = await this.setup();
    const python = 'error' in host.python ? null : host.python;
    const pythonProblem = 'error' in host.python ? host.python.error : null;
    return this.createWith(isolation, containment, { python, pythonProblem }, options);
  }

  private async createWith(
    isolation: Isolation,
    containment: Containment,
    interpreter: { python: { executable: string } | null; pythonProblem: string | null },
    options: SandboxCreateOptions,
  ): Promise<LocalSandbox> {
    const startedAt = performance.now();
    const id = newSandboxId(options.label);
    const root = path.join(this.options.settings.rootDir, `${SANDBOX_DIR_PREFIX}${id}`);
    // /tmp and the verifier's /tmp share one size-capped tmpfs (when the host can mount one).
    const scratch = path.join(root, 'scratch');
    const dirs: SandboxDirs = {
      root,
      home: path.join(root, 'home'),
      tmp: path.join(scratch, 'tmp'),
      channel: path.join(root, 'channel'),
      verifierHome: path.join(root, 'verifier-home'),
      verifierTmp: path.join(scratch, 'verifier-tmp'),
      reward: path.join(root, 'home', 'logs', 'verifier'),
      tests: path.join(root, 'tests'),
      rootOwned: (this.options.rootUser?.dirs ?? []).map((dir, index) => ({
        path: dir.path,
        host: path.join(root, 'root-owned', String(index)),
      })),
    };
    const limits = this.options.settings.limits;
    let uidLease: UidLease | null = null;
    let cgroup: SandboxCgroup | null = null;
    let tmpfsMountPoint: string | null = null;
    const owner = { pid: process.pid, createdAt: new Date().toISOString(), metadata: options.metadata ?? {} };
    if (this.options.sharedNetwork) {
      const problem =
        isolation.name !== 'bubblewrap' || this.options.settings.network !== 'isolated'
          ? 'it needs bubblewrap and the isolated network'
          : sharedNetworkProblem();
      if (problem) throw new SandboxError(`could not create a sandbox with a shared network namespace: ${problem}`);
    }
    try {
      // Plain processes under other uids must traverse the root to reach their home; nobody may list it.
      await mkdir(root, { recursive: true, mode: 0o700 });
      await writeFile(path.join(root, OWNER_FILE), JSON.stringify(owner));
      if (this.options.sharedNetwork) {
        dirs.network = path.join(root, 'netns');
        await createNetworkNamespace(dirs.network);
      }
      if (isolation.dropsPrivileges && isolation.name === 'none') await chmod(root, 0o711);
      if (isolation.dropsPrivileges && containment.uids) uidLease = await containment.uids.allocate();
      const uids = uidLease?.uids ?? (isolation.dropsPrivileges ? { agent: SANDBOX_UID, verifier: SANDBOX_UID } : null);
      if (containment.cgroups) cgroup = await containment.cgroups.create(id, { memoryBytes: limits.memoryBytes, pids: limits.processes });
      await makeDir(scratch, 0o711, null);
      if (containment.tmpfs) {
        await mountTmpfs(scratch, limits.tmpBytes);
        tmpfsMountPoint = scratch;
      }
      await makeDir(dirs.home, 0o755, uids?.agent ?? null);
      await makeDir(path.join(dirs.home, 'workdir'), 0o755, uids?.agent ?? null);
      await makeDir(dirs.tmp, 0o1777, uids?.agent ?? null);
      await makeDir(dirs.channel, 0o755, null);
      if (dirs.rootOwned!.length > 0) await makeDir(path.join(root, 'root-owned'), 0o755, null);
      for (const [index, dir] of dirs.rootOwned!.entries()) await makeDir(dir.host, this.options.rootUser!.dirs[index]!.mode, null);
      const sandbox = new LocalSandbox({
        id,
        dirs,
        isolation,
        pythonExecutable: interpreter.python?.executable ?? null,
        pythonProblem: interpreter.pythonProblem,
        env: options.env ?? {},
        lifetimeMs: options.lifetimeMs ?? null,
        onKilled: (s) => this.live.delete(s),
        uids,
        uidLease,
        cgroup,
        tmpfsMountPoint,
        rootUser: this.options.rootUser !== undefined,
      });
      this.live.add(sandbox);
      this.options.logger.debug(
        {
          sandbox: id,
          isolation: isolation.name,
          dir: root,
          ...(uids ? { uids } : {}),
          ms: Math.round((performance.now() - startedAt) * 10) / 10,
          ...(options.template ? { template: options.template } : {}),
          metadata: owner.metadata,
        },
        'sandbox created',
      );
      return sandbox;
    } catch (error) {
      if (tmpfsMountPoint) await unmount(tmpfsMountPoint).catch(() => undefined);
      if (dirs.network) await removeNetworkNamespace(dirs.network).catch(() => undefined);
      await removeNoFollow(root).catch(() => undefined);
      await cgroup?.remove().catch(() => undefined);
      await uidLease?.release();
      throw new SandboxError(`could not create a sandbox: ${(error as Error).message}`);
    }
  }

  async killAll(): Promise<void> {
    await Promise.allSettled([...this.live].map((s) => s.kill()));
  }
}
