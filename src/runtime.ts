import { loadConfig, type Config } from './config.js';
import { Lifecycle } from './lifecycle.js';
import { createLogger, type Logger } from './log.js';
import { resourcesDir } from './paths.js';
import { LocalSandboxProvider } from './sandbox/local/provider.js';
import type { SandboxProvider } from './sandbox/types.js';

/** The process-wide parts every transport shares: settings, logging, sandboxes and exit handling. */
export interface Runtime {
  config: Config;
  logger: Logger;
  provider: SandboxProvider;
  lifecycle: Lifecycle;
}

export function createRuntime(env: NodeJS.ProcessEnv = process.env): Runtime {
  const config = loadConfig(env);
  const logger = createLogger(config.logLevel);
  const lifecycle = new Lifecycle(logger);
  const provider = new LocalSandboxProvider({
    sandbox: config.sandbox,
    pythonExecutable: config.python.executable,
    resourcesDir,
    logger,
  });
  // Registered first so it runs last: whatever sessions leave behind is killed here.
  lifecycle.onShutdown('sandboxes', () => provider.killAll());
  lifecycle.installProcessHandlers();
  return { config, logger, provider, lifecycle };
}
