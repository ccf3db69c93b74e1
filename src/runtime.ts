import path from 'node:path';
import type { Config } from './config.js';
import { findOpencodeBinary, installedOpencodeVersion } from './core/rollout/opencode-binary.js';
import type { RolloutRunner, RolloutService } from './core/rollout/run.js';
import type { WarmPool } from './core/rollout/warm-pool.js';
import { TraceStore } from './core/traces.js';
import { Lifecycle } from './lifecycle.js';
import type { Logger } from './log.js';
import { resourcesDir } from './paths.js';
import { createSandboxProvider } from './sandbox/factory.js';
import type { SandboxBinary, SandboxProvider } from './sandbox/types.js';
import { CancelGroup } from './util/cancel-group.js';
import { Semaphore } from './util/semaphore.js';

/** A warm opencode not ready this long after its sandbox was asked for is replaced (opencode can hang at start-up). */
const WARM_READY_TIMEOUT_MS = 60_000;
/** A warm opencode nobody took this long is replaced by a fresh one. */
const WARM_IDLE_MS = 10 * 60_000;
/** Waiting warm opencodes are asked this often whether they still answer, and replaced if they do not in time. */
const WARM_HEALTH_INTERVAL_MS = 15_000;
const WARM_HEALTH_TIMEOUT_MS = 10_000;
/** A waiting opencode serve grown past this is replaced (a fresh one holds about 300 MiB). */
const WARM_MAX_RSS_MIB = 1024;

/** The process-wide parts every transport and session shares: settings, logging, sandboxes, rollouts, traces and exit handling. */
export interface Runtime {
  config: Config;
  logger: Logger;
  provider: SandboxProvider;
  traces: TraceStore;
  rollouts: RolloutService;
  lifecycle: Lifecycle;
  /**
   * Looks up what rollouts need (the opencode binary) and warns now if it is missing. Everything works
   * without calling it; a server calls it once its client is connected, to report problems early.
   */
  checkRolloutPrerequisites(): void;
}

/**
 * Builds the runtime. The parts a client may never use (the sandbox backend, the rollout runner and its
 * proxy, the opencode lookup) load on first use: MCP hosts start the stdio server often and wait for it.
 */
export function createRuntime(config: Config, logger: Logger): Runtime {
  const lifecycle = new Lifecycle(logger, config.shutdownGraceMs);
  let binaries: Partial<Record<SandboxBinary, string>> | null = null;
  /** Why the opencode binary cannot be used, so a rollout can say so rather than that none was configured. */
  let opencodeProblem: string | null = null;
  const resolveBinaries = (): Partial<Record<SandboxBinary, string>> => {
    if (!binaries) {
      binaries = { node: process.execPath };
      try {
        binaries.opencode = findOpencodeBinary(config.rollouts.opencodeBinary);
      } catch (error) {
        opencodeProblem = (error as Error).message;
        logger.warn({ problem: opencodeProblem }, 'run_rollout will be unavailable');
      }
    }
    return binaries;
  };
  logger.info({ backend: config.sandbox.backend, reason: config.sandbox.reason }, `sandbox backend: ${config.sandbox.backend}`);
  const traces = new TraceStore(path.join(config.dataDir, 'traces'), { maxTraceBytes: config.maxTraceBytes });
  const provider = createSandboxProvider(config.sandbox, {
    resourcesDir,
    hiddenPaths: [config.dataDir],
    dataDir: config.dataDir,
    binaries: resolveBinaries,
    opencodeVersion: installedOpencodeVersion,
    logger,
  });
  const concurrency = new Semaphore(config.rollouts.maxConcurrent);
  const startWarmPool = (Pool: typeof WarmPool): WarmPool => {
    const pool = new Pool({
      provider,
      size: config.rollouts.warmPool,
      logger,
      readyTimeoutMs: WARM_READY_TIMEOUT_MS,
      idleMs: WARM_IDLE_MS,
      healthIntervalMs: WARM_HEALTH_INTERVAL_MS,
      healthTimeoutMs: WARM_HEALTH_TIMEOUT_MS,
      maxRssMiB: WARM_MAX_RSS_MIB,
    });
    // Registered after the sandboxes' step, so it runs before it: no refill may start while they are killed.
    lifecycle.onShutdown('warm pool', () => pool.close());
    return pool;
  };
  let runner: Promise<RolloutRunner> | null = null;
  const inFlight = new CancelGroup();
  const rollouts: RolloutService = {
    run: (spec, options) =>
      inFlight.run(options?.signal, async (signal) => {
        runner ??= Promise.all([import('./core/rollout/run.js'), import('./core/rollout/warm-pool.js')]).then(
          ([{ RolloutRunner }, { WarmPool }]) =>
            new RolloutRunner({
              warmPool: config.rollouts.warmPool > 0 ? startWarmPool(WarmPool) : null,
              provider,
              traces,
              concurrency,
              maxConsecutiveUpstreamFailures: config.rollouts.upstreamMaxFailures,
              maxRequestBytes: config.rollouts.maxRequestBytes,
              agentProblem: () => {
                resolveBinaries();
                return opencodeProblem;
              },
              endpoints: config.rollouts.endpoints,
              logger,
            }),
        );
        return (await runner).run(spec, { ...options, signal });
      }),
  };
  // Registered first so it runs last: whatever sessions leave behind is killed here.
  lifecycle.onShutdown('sandboxes', () => provider.killAll());
  // Runs before that: rollouts still running are cancelled and store their traces (as `cancelled`) before exit.
  lifecycle.onShutdown('rollouts', () => inFlight.cancelAll('the server is shutting down'));
  return { config, logger, provider, traces, rollouts, lifecycle, checkRolloutPrerequisites: () => void resolveBinaries() };
}
