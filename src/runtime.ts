import path from 'node:path';
import type { Config } from './config.js';
import { findOpencodeBinary } from './core/rollout/opencode-binary.js';
import { RolloutRunner } from './core/rollout/run.js';
import { TraceStore } from './core/traces.js';
import { Lifecycle } from './lifecycle.js';
import type { Logger } from './log.js';
import { resourcesDir } from './paths.js';
import { createSandboxProvider } from './sandbox/factory.js';
import type { SandboxBinary, SandboxProvider } from './sandbox/types.js';
import { Semaphore } from './util/semaphore.js';

/** The process-wide parts every transport and session shares: settings, logging, sandboxes, rollouts, traces and exit handling. */
export interface Runtime {
  config: Config;
  logger: Logger;
  provider: SandboxProvider;
  traces: TraceStore;
  rollouts: RolloutRunner;
  lifecycle: Lifecycle;
}

export function createRuntime(config: Config, logger: Logger): Runtime {
  const lifecycle = new Lifecycle(logger);
  const binaries: Partial<Record<SandboxBinary, string>> = { node: process.execPath };
  try {
    binaries.opencode = findOpencodeBinary(config.rollouts.opencodeBinary);
  } catch (error) {
    logger.warn({ problem: (error as Error).message }, 'run_rollout will be unavailable');
  }
  const traces = new TraceStore(path.join(config.dataDir, 'traces'));
  const provider = createSandboxProvider(config.sandbox, { resourcesDir, hiddenPaths: [config.dataDir], binaries, logger });
  const rollouts = new RolloutRunner({
    provider,
    traces,
    concurrency: new Semaphore(config.rollouts.maxConcurrent),
    maxConsecutiveUpstreamFailures: config.rollouts.upstreamMaxFailures,
    endpoints: config.rollouts.endpoints,
    logger,
  });
  // Registered first so it runs last: whatever sessions leave behind is killed here.
  lifecycle.onShutdown('sandboxes', () => provider.killAll());
  return { config, logger, provider, traces, rollouts, lifecycle };
}
