// One conformance suite (test/helpers/backend-conformance.ts) against both sandbox backends: the local one, and E2B
// through the real e2b SDK talking to the offline stand-in over real HTTP (its sandboxes have no network route: a
// rollout passes only because the agent's LLM traffic goes over the sandbox's command channel).
import { readdirSync } from 'node:fs';
import { backendConformance } from './helpers/backend-conformance.js';
import { serverEnv, startE2bStandIn } from './helpers/e2b-standin/index.js';

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
      env: serverEnv(standIn),
      liveSandboxes: async () => standIn.sandboxes().filter((s) => s.state === 'running').length,
      internetAccessAsked: (sandboxId) => standIn.sandboxes().find((s) => s.sandboxId === sandboxId)?.allowInternetAccess,
      tearDown: () => standIn.close(),
    };
  },
});
