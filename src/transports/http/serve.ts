import type { Runtime } from '../../runtime.js';
import { HTTP_ROUTE_MODULES } from './routes.js';
import { serveHttp } from './server.js';

/** `opencode-env http`: serves every route until the process is told to stop; then closes sessions and sandboxes. */
export async function serveHttpMode(runtime: Runtime): Promise<void> {
  const server = await serveHttp(runtime, HTTP_ROUTE_MODULES);
  runtime.lifecycle.onShutdown('http server', () => server.close());
  runtime.checkRolloutPrerequisites();
  runtime.logger.info(
    { url: server.url, token: runtime.config.http.token !== null, web: runtime.config.http.webInterface },
    `serving HTTP on ${server.url}`,
  );
}
