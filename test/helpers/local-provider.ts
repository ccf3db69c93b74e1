import { loadConfig } from '../../src/config.js';
import { findOpencodeBinary } from '../../src/core/rollout/opencode-binary.js';
import { createLogger } from '../../src/log.js';
import { resourcesDir } from '../../src/paths.js';
import { createSandboxProvider } from '../../src/sandbox/factory.js';
import type { SandboxProvider } from '../../src/sandbox/types.js';

/** A local provider built the way the server builds it, from environment settings, with node and opencode. */
export function localProvider(rootDir: string, env: Record<string, string> = {}): SandboxProvider {
  const config = loadConfig({ OPENCODE_ENV_SANDBOX_DIR: rootDir, ...env });
  return createSandboxProvider(config.sandbox, {
    resourcesDir,
    hiddenPaths: [],
    binaries: () => ({ node: process.execPath, opencode: findOpencodeBinary(null) }),
    logger: createLogger('silent'),
  });
}
