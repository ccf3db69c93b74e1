import path from 'node:path';
import { loadConfig, type Config } from './config.js';
import { findOpencodeBinary } from './core/rollout/opencode-binary.js';
import { RolloutRunner } from './core/rollout/run.js';
import { TraceStore } from './core/traces.js';
import { Lifecycle } from './lifecycle.js';
import { createLogger, type Logger } from './log.js';
import { resourcesDir } from './paths.js';
import { LocalSandboxProvider } from './sandbox/local/provider.js';
import type { SandboxProvider, SandboxTool } from './sandbox/types.js';
import { Semaphore } from './util/semaphore.js';

/** The process-wide parts every transport shares: settings, logging, sandboxes, rollouts, traces and exit handling. */
export interface Runtime {
  config: Config;
  logger: Logger;
  provider: SandboxProvider;
  traces: TraceStore;
  rollouts: RolloutRunner;
  lifecycle: Lifecycle;
}

export function createRuntime(env: NodeJS.ProcessEnv = process.env): Runtime {
  const config = loadConfig(env);
  const logger = createLogger(config.logLevel);
  const lifecycle = new Lifecycle(logger);
  const tools: Partial<Record<SandboxTool, string>> = { node: process.execPath };
  try {
    tools.opencode = findOpencodeBinary(env.OPENCODE_ENV_OPENCODE_BIN);
  } catch (error) {
    logger.warn({ problem: (error as Error).message }, 'run_rollout will be unavailable');
  }
  const traces = new TraceStore(path.join(config.dataDir, 'traces'));
  const provider = new LocalSandboxProvider({
    sandbox: config.sandbox,
    pythonExecutable: config.python.executable,
    resourcesDir,
    hiddenPaths: [config.dataDir],
    tools,
    logger,
  });
  const rollouts = new RolloutRunner({
    provider,
    traces,
    concurrency: new Semaphore(config.rollouts.maxConcurrent),
    maxConsecutiveUpstreamFailures: config.rollouts.upstreamMaxFailures,
    logger,
    env,
  });
  // Registered first so it runs last: whatever sessions leave behind is killed here.
  lifecycle.onShutdown('sandboxes', () => provider.killAll());
  lifecycle.installProcessHandlers();
  return { config, logger, provider, traces, rollouts, lifecycle };
}
