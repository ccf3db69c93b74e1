import path from 'node:path';
import type { Logger } from '../log.js';
import { ConfigError } from '../errors.js';
import type { E2bSandboxSettings } from './e2b/settings.js';
import type { LocalSandboxSettings } from './local/settings.js';
import type { SandboxBackendName, SandboxBinary, SandboxProvider } from './types.js';

/** The sandbox part of the server's config: which backend, and one section of settings per backend. */
export interface SandboxSettings {
  backend: SandboxBackendName;
  /** Why this backend (for the start-up log line): the variable that chose it. */
  reason: string;
  local: LocalSandboxSettings;
  /** Present when E2B_API_KEY is set. */
  e2b: E2bSandboxSettings | null;
}

/** What every backend gets from the server, whatever its settings. */
export interface SandboxProviderDeps {
  /** The project's resources/ directory (the Python driver, the LLM bridge). */
  resourcesDir: string;
  /** Host directories sandboxes must never see (e.g. the trace store). */
  hiddenPaths: string[];
  /** Host binaries sandboxes need (opencode, node), looked up when the backend first needs them. */
  binaries: () => Partial<Record<SandboxBinary, string>>;
  logger: Logger;
  /** The server's data directory: the E2B backend records there that this instance is alive (for `gc`). */
  dataDir?: string;
  /** The opencode-ai version a remote sandbox gets when its template lacks opencode (the server's own). */
  opencodeVersion?: () => string;
}

/**
 * A provider whose backend code loads on first use: a session that never touches a sandbox (or an MCP host
 * waiting for `initialize`) does not pay for it, and shutdown has nothing to kill if it never loaded.
 */
function loadedOnFirstUse(backend: SandboxBackendName, load: () => Promise<SandboxProvider>): SandboxProvider {
  let loading: Promise<SandboxProvider> | null = null;
  const provider = () => (loading ??= load());
  return {
    backend,
    isolation: async () => (await provider()).isolation(),
    create: async (options) => (await provider()).create(options),
    killAll: async () => {
      const loaded = await loading?.catch(() => null);
      await loaded?.killAll();
    },
  };
}

/** The one place a sandbox provider is built: adding a backend means a case here and a section in its settings. */
export function createSandboxProvider(settings: SandboxSettings, deps: SandboxProviderDeps): SandboxProvider {
  switch (settings.backend) {
    case 'local':
      return loadedOnFirstUse('local', async () => {
        const { LocalSandboxProvider } = await import('./local/provider.js');
        return new LocalSandboxProvider({
          settings: settings.local,
          resourcesDir: deps.resourcesDir,
          hiddenPaths: deps.hiddenPaths,
          binaries: deps.binaries(),
          logger: deps.logger,
        });
      });
    case 'e2b': {
      const e2b = settings.e2b;
      if (!e2b) throw new ConfigError('the e2b sandbox backend needs E2B_API_KEY');
      return loadedOnFirstUse('e2b', async () => {
        const { E2bSandboxProvider } = await import('./e2b/provider.js');
        const { INSTANCES_SUBDIR } = await import('./e2b/instances.js');
        return new E2bSandboxProvider({
          settings: e2b,
          resourcesDir: deps.resourcesDir,
          logger: deps.logger,
          ...(deps.opencodeVersion ? { opencodeVersion: deps.opencodeVersion() } : {}),
          ...(deps.dataDir ? { instancesDir: path.join(deps.dataDir, INSTANCES_SUBDIR) } : {}),
        });
      });
    }
  }
}
