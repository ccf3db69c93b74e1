// One conformance suite (test/helpers/backend-conformance.ts) against both sandbox backends: the local one, and E2B
// through the real e2b SDK talking to the offline stand-in over real HTTP (its sandboxes have no network route: a
// rollout passes only because the agent's LLM traffic goes over the sandbox's command channel).
import { readdirSync } from 'node:fs';
import { backendConformance } from './helpers/backend-conformance.js';
import { startE2bStandIn } from './helpers/e2b-standin/index.js';

backendConformance({
  name: 'local',
  backend: 'local',
  setUp: async () => ({
    env: { OPENCODE_ENV_SANDBOX: 'local' },
    liveSandboxes: async (server) => readdirSync(server.sandboxRoot).length,
    tearDown: async () => {},
  }),
});

backendConformance({
  name: 'e2b (stand-in)',
  backend: 'e2b',
  setUp: async () => {
    const standIn = await startE2bStandIn();
    return {
      // The SDK reads E2B_API_URL and E2B_SANDBOX_URL itself; the server never sets them.
      env: {
        E2B_API_KEY: standIn.apiKey,
        E2B_API_URL: standIn.apiUrl,
        E2B_SANDBOX_URL: standIn.sandboxUrl,
        OPENCODE_ENV_E2B_CREATE_PER_S: '50',
      },
      liveSandboxes: async () => standIn.sandboxes().filter((s) => s.state === 'running').length,
      internetAccessAsked: (sandboxId) => standIn.sandboxes().find((s) => s.sandboxId === sandboxId)?.allowInternetAccess,
      tearDown: () => standIn.close(),
    };
  },
});
