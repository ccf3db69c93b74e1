// The E2B backend against real E2B, wherever E2B_API_KEY is set (it bills that account: a few sandbox-minutes per run).
// Without a key it is reported as skipped, saying why. The template must exist: `opencode-env template build` (or name
// another one with OPENCODE_ENV_E2B_TEMPLATE). The model is still the scripted one on this machine: the agent reaches it
// through the sandbox's command channel, so no route from E2B to here is needed.
import { describe, it } from 'node:test';
import { E2B } from 'e2b';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { resourcesDir } from '../src/paths.js';
import { E2bSandboxProvider } from '../src/sandbox/e2b/provider.js';
import { E2B_APP_TAG } from '../src/sandbox/e2b/settings.js';
import { backendConformance } from './helpers/backend-conformance.js';
import { sandboxContract } from './helpers/sandbox-contract.js';

const apiKey = process.env.E2B_API_KEY;

if (!apiKey) {
  describe('e2b live suite', () => {
    it('runs against real E2B', { skip: 'E2B_API_KEY is not set: the live suite against real E2B was skipped' }, () => {});
  });
} else {
  // The SDK's own variables (E2B_DOMAIN, E2B_API_URL, ...) pass through untouched, as they would to the server.
  const e2bVariables = Object.fromEntries(Object.entries(process.env).filter(([name]) => name.startsWith('E2B_'))) as Record<
    string,
    string
  >;
  const template = process.env.OPENCODE_ENV_E2B_TEMPLATE;

  sandboxContract({
    name: 'e2b (live)',
    createProvider: async () => {
      const settings = loadConfig({
        ...e2bVariables,
        OPENCODE_ENV_SANDBOX: 'e2b',
        ...(template ? { OPENCODE_ENV_E2B_TEMPLATE: template } : {}),
      }).sandbox.e2b!;
      return new E2bSandboxProvider({ settings, resourcesDir, logger: createLogger('warn') });
    },
  });

  backendConformance({
    name: 'e2b (live)',
    backend: 'e2b',
    setUp: async () => ({
      env: { ...e2bVariables, OPENCODE_ENV_SANDBOX: 'e2b', ...(template ? { OPENCODE_ENV_E2B_TEMPLATE: template } : {}) },
      // This server's sandboxes: tagged with its pid and host by the provider.
      liveSandboxes: async (server) => {
        const paginator = new E2B({ apiKey }).Sandbox.list({ query: { metadata: { app: E2B_APP_TAG, serverPid: String(server.pid) } } });
        let count = 0;
        while (paginator.hasNext) count += (await paginator.nextItems()).filter((s) => s.state === 'running').length;
        return count;
      },
      tearDown: async () => {},
    }),
  });
}
