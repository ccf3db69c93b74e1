import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Config } from '../../config.js';
import type { Logger } from '../../log.js';
import type { Runtime } from '../../runtime.js';
import { isAuthorized } from './auth.js';
import { HttpError, sendJson } from './body.js';
import { SessionRegistry } from './sessions.js';

/** What every route of the HTTP server shares. */
export interface HttpContext {
  runtime: Runtime;
  sessions: SessionRegistry;
  settings: Config['http'];
  logger: Logger;
}

export interface HttpRoute {
  /** `GET`, `POST`, ... or `*` for any (the route then answers 405 itself where it must). */
  method: string;
  /** An exact path, or a prefix ending in `/*` (`/web/*` matches `/web/` and everything under it). */
  path: string;
  /** Reachable without the token (only /health). */
  public?: boolean;
  /** The token may come as `?token=`, for browsers (downloads, the web UI's WebSocket). */
  tokenInQuery?: boolean;
  handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void>;
}

export interface WebSocketRoute {
  path: string;
  handle(socket: WebSocket, req: IncomingMessage, url: URL): void;
}

/** A group of routes with one job (OpenEnv REST, /ws, /mcp, the web UI), built from the shared context. */
export type RouteModule = (context: HttpContext) => { routes?: HttpRoute[]; webSockets?: WebSocketRoute[] };

export interface HttpServer {
  /** `http://host:port`, with the port actually bound. */
  url: string;
  context: HttpContext;
  /** Stops accepting, closes every session (killing their sandboxes) and every connection. */
  close(): Promise<void>;
}

function matches(route: HttpRoute, pathname: string): boolean {
  if (route.path.endsWith('/*')) {
    const prefix = route.path.slice(0, -2);
    return pathname === prefix || pathname.startsWith(`${prefix}/`);
  }
  return route.path === pathname;
}

function refuseUpgrade(socket: Duplex, status: number, reason: string): void {
  const body = JSON.stringify({ detail: reason });
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/**
 * The HTTP server of `opencode-env http`: plain node:http routing (every route of every module), the token check,
 * WebSocket upgrades, and one session registry for all transports. Errors a route throws become JSON answers, never a
 * crash; what a route must answer in its own protocol's shape (JSON-RPC, WebSocket frames) it answers itself.
 */
export async function serveHttp(runtime: Runtime, modules: RouteModule[]): Promise<HttpServer> {
  const settings = runtime.config.http;
  const logger = runtime.logger.child({ transport: 'http' });
  const sessions = new SessionRegistry(runtime, { maxSessions: settings.maxSessions, idleMs: settings.sessionIdleMs, logger });
  const context: HttpContext = { runtime, sessions, settings, logger };
  const built = modules.map((module) => module(context));
  const routes = built.flatMap((b) => b.routes ?? []);
  const webSocketRoutes = built.flatMap((b) => b.webSockets ?? []);
  const webSockets = new WebSocketServer({ noServer: true, maxPayload: settings.maxBodyBytes });

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const candidates = routes.filter((route) => matches(route, url.pathname));
    const route = candidates.find((r) => r.method === '*' || r.method === req.method);
    void (async () => {
      try {
        if (candidates.length === 0) throw new HttpError(404, 'Not Found');
        if (!route) throw new HttpError(405, 'Method Not Allowed');
        if (!route.public && !isAuthorized(req, url, settings.token, route.tokenInQuery ?? false)) {
          throw new HttpError(401, 'a valid Authorization: Bearer token is required (OPENCODE_ENV_TOKEN)');
        }
        await route.handle(req, res, url);
      } catch (error) {
        const status = error instanceof HttpError ? error.status : 500;
        if (status === 500) logger.error({ err: error, path: url.pathname }, 'request failed');
        if (res.headersSent) {
          res.destroy();
          return;
        }
        const body = error instanceof HttpError ? (error.body ?? { detail: error.message }) : { detail: 'Internal Server Error' };
        try {
          sendJson(res, status, body, status === 401 ? { 'www-authenticate': 'Bearer' } : {});
        } catch (sendError) {
          // The answer itself could not be made (e.g. it echoed a hostile input): drop this request, never the server.
          logger.error({ err: sendError, path: url.pathname }, 'could not answer a request');
          res.destroy();
          return;
        }
        // An unread body (refused before it was read) must not be taken for the next request.
        if (!req.complete) req.resume();
      }
    })();
  });
  // A client that trickles its headers or body is cut off rather than holding a socket forever.
  server.headersTimeout = 30_000;
  server.requestTimeout = 0; // rollouts answer after minutes; the socket's own inactivity limit below applies instead
  server.keepAliveTimeout = 5_000;

  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const route = webSocketRoutes.find((r) => r.path === url.pathname);
    if (!route) return refuseUpgrade(socket, 404, 'Not Found');
    if (!isAuthorized(req, url, settings.token, true)) return refuseUpgrade(socket, 401, 'Unauthorized');
    webSockets.handleUpgrade(req, socket, head, (ws) => route.handle(ws, req, url));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(settings.port, settings.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;

  let closing: Promise<void> | null = null;
  return {
    url,
    context,
    close: () =>
      (closing ??= (async () => {
        server.close();
        for (const client of webSockets.clients) client.terminate();
        await sessions.closeAll('the server is shutting down');
        server.closeAllConnections();
      })()),
  };
}
