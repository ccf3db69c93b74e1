import type { Logger } from '../log.js';
import { LocalSandboxProvider } from './local/provider.js';
import type { LocalSandboxSettings } from './local/settings.js';
import type { SandboxBinary, SandboxProvider } from './types.js';

/** The sandbox part of the server's config: which backend, and one section of settings per backend. */
export interface SandboxSettings {
  backend: 'local';
  local: LocalSandboxSettings;
}

/** What every backend gets from the server, whatever its settings. */
export interface SandboxProviderDeps {
  /** The project's resources/ directory (the Python driver, the LLM bridge). */
  resourcesDir: string;
  /** Host directories sandboxes must never see (e.g. the trace store). */
  hiddenPaths: string[];
  /** Host binaries sandboxes need (opencode, node). */
  binaries: Partial<Record<SandboxBinary, string>>;
  logger: Logger;
}

/** The one place a sandbox provider is built: adding a backend means a case here and a section in its settings. */
export function createSandboxProvider(settings: SandboxSettings, deps: SandboxProviderDeps): SandboxProvider {
  switch (settings.backend) {
    case 'local':
      return new LocalSandboxProvider({
        settings: settings.local,
        resourcesDir: deps.resourcesDir,
        hiddenPaths: deps.hiddenPaths,
        binaries: deps.binaries,
        logger: deps.logger,
      });
  }
}
