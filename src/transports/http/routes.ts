import { openEnvRest } from '../openenv/rest.js';
import { openEnvWebSockets } from '../openenv/ws.js';
import { mcpEndpoint } from './mcp-route.js';
import type { RouteModule } from './server.js';
import { webInterface } from './web.js';

/** Liveness, for load balancers, Docker's HEALTHCHECK and OpenEnv's `wait_for_ready`: public, cheap, no session. */
const health: RouteModule = () => ({
  routes: [
    {
      method: 'GET',
      path: '/health',
      public: true,
      handle: async (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"status":"healthy"}');
      },
    },
  ],
});

/** Every route module of HTTP mode, in the order they are matched. */
export const HTTP_ROUTE_MODULES: RouteModule[] = [health, openEnvRest, openEnvWebSockets, mcpEndpoint, webInterface];
