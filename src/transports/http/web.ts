import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { WebSocket } from 'ws';
import { resourcesDir } from '../../paths.js';
import { callTool } from '../../tools/call-tool.js';
import { findTool, TOOLS } from '../../tools/index.js';
import { isAuthorized } from './auth.js';
import { HttpError, sendJson } from './body.js';
import type { HttpContext, HttpRoute, RouteModule, WebSocketRoute } from './server.js';
import { CapacityError, type HttpSession } from './sessions.js';
import { webClientFrameSchema, type WebServerFrame } from './web-protocol.js';

/** The page, its styles and modules: plain files, no build step. */
const WEB_ROOT = path.join(resourcesDir, 'web');

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
};

/** The page loads only its own files and talks only to its own origin. */
const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
};

/**
 * With a token, the page is opened as /web/?token=…, but the browser fetches its styles and modules without the query. The
 * first authorized request sets this cookie (a digest of the token, never the token), which opens the page's own files and
 * nothing else: the trace API and the socket still need the token itself.
 */
const ASSET_COOKIE = 'opencode_env_web';

function assetCookieValue(token: string): string {
  return createHash('sha256').update(`opencode-env web assets\0${token}`).digest('hex');
}

function hasAssetCookie(req: IncomingMessage, token: string): boolean {
  const expected = `${ASSET_COOKIE}=${assetCookieValue(token)}`;
  return (req.headers.cookie ?? '').split(/;\s*/).includes(expected);
}

/** `/web` and `/` lead to `/web/`, keeping the query (the token). */
function redirectToPage(url: URL, res: ServerResponse): void {
  res.writeHead(302, { location: `/web/${url.search}`, 'cache-control': 'no-store' });
  res.end();
}

/** The file under WEB_ROOT that a `/web/...` path names, or null: no traversal, no dotfiles, no directories but the root. */
function staticFileFor(pathname: string): string | null {
  let relative: string;
  try {
    relative = decodeURIComponent(pathname.slice('/web/'.length));
  } catch {
    return null;
  }
  if (relative === '') relative = 'index.html';
  if (relative.includes('\0') || relative.includes('\\')) return null;
  const parts = relative.split('/');
  if (parts.some((part) => part === '' || part.startsWith('.'))) return null;
  const file = path.resolve(WEB_ROOT, ...parts);
  return file.startsWith(`${WEB_ROOT}${path.sep}`) ? file : null;
}

/** The page's files open with the token, or with the cookie the page got with it; returns whether the token came. */
function checkPageAccess(context: HttpContext, req: IncomingMessage, url: URL): boolean {
  const { token } = context.settings;
  const byToken = isAuthorized(req, url, token, true);
  if (token !== null && !byToken && !hasAssetCookie(req, token)) {
    throw new HttpError(401, 'open the page with ?token=<OPENCODE_ENV_TOKEN>');
  }
  return byToken;
}

async function serveStatic(context: HttpContext, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const { token } = context.settings;
  const byToken = checkPageAccess(context, req, url);
  const file = staticFileFor(url.pathname);
  const info = file ? await stat(file).catch(() => null) : null;
  if (!file || !info?.isFile()) throw new HttpError(404, 'Not Found');

  const etag = `"${info.size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}"`;
  const headers: Record<string, string> = {
    'content-type': CONTENT_TYPES[path.extname(file)] ?? 'application/octet-stream',
    // Small files that change with the package: always revalidate (cheap, thanks to the ETag), never serve a stale UI.
    'cache-control': 'no-cache',
    etag,
    ...SECURITY_HEADERS,
  };
  if (token !== null && byToken) {
    headers['set-cookie'] = `${ASSET_COOKIE}=${assetCookieValue(token)}; Path=/web/; HttpOnly; SameSite=Strict`;
  }
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  const body = await readFile(file);
  res.writeHead(200, { ...headers, 'content-length': String(body.length) });
  res.end(body);
}

/** `/web/api/traces/<id>` or `/web/api/traces/<id>/download`. */
function parseTracePath(pathname: string): { id: string; download: boolean } | null {
  const match = /^\/web\/api\/traces\/([^/]+)(\/download)?$/.exec(pathname);
  return match ? { id: match[1]!, download: match[2] !== undefined } : null;
}

function traceRoutes(context: HttpContext): HttpRoute[] {
  const { traces } = context.runtime;
  return [
    {
      method: 'GET',
      path: '/web/api/traces',
      tokenInQuery: true,
      handle: async (_req, res, url) => {
        const limit = Number(url.searchParams.get('limit') ?? 500);
        const list = await traces.list(Number.isFinite(limit) && limit > 0 ? limit : 500);
        sendJson(res, 200, { traces: list }, { 'cache-control': 'no-store' });
      },
    },
    {
      method: 'GET',
      path: '/web/api/traces/*',
      tokenInQuery: true,
      handle: async (_req, res, url) => {
        const target = parseTracePath(url.pathname);
        if (!target) throw new HttpError(404, 'Not Found');
        if (target.download) await sendTraceFile(context, target.id, res);
        else await sendTraceDocument(context, target.id, res);
      },
    },
  ];
}

/** The whole trace as one JSON document (turns with their requests, responses and logprobs), streamed. */
async function sendTraceDocument(context: HttpContext, id: string, res: ServerResponse): Promise<void> {
  const chunks = await context.runtime.traces.documentChunks(id);
  if (!chunks) throw new HttpError(404, `no trace ${id}`);
  res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  for await (const chunk of chunks) {
    if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve));
  }
  res.end();
}

/** The trace file as stored (JSON Lines), as a download; a version-1 trace (one document) becomes one line. */
async function sendTraceFile(context: HttpContext, id: string, res: ServerResponse): Promise<void> {
  const { traces } = context.runtime;
  let file: string;
  try {
    file = traces.fileFor(id);
  } catch {
    throw new HttpError(404, `no trace ${id}`);
  }
  const headers = {
    'content-type': 'application/x-ndjson; charset=utf-8',
    'content-disposition': `attachment; filename="${id}.jsonl"`,
    'cache-control': 'no-store',
  };
  const info = await stat(file).catch(() => null);
  if (info?.isFile()) {
    res.writeHead(200, { ...headers, 'content-length': String(info.size) });
    await pipeline(createReadStream(file), res);
    return;
  }
  const chunks = await traces.documentChunks(id);
  if (!chunks) throw new HttpError(404, `no trace ${id}`);
  let text = '';
  for await (const chunk of chunks) text += chunk;
  res.writeHead(200, headers);
  res.end(`${JSON.stringify(JSON.parse(text))}\n`);
}

/** One browser tab: a session of its own for as long as the socket is open. */
function serveSocket(context: HttpContext, ws: WebSocket): void {
  const send = (frame: WebServerFrame) => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(frame));
  };
  let entry: HttpSession;
  try {
    entry = context.sessions.open('web');
  } catch (error) {
    if (!(error instanceof CapacityError)) throw error;
    send({ type: 'error', code: 'capacity', message: error.message });
    ws.close(1013, 'server at capacity');
    return;
  }
  const running = new Map<string | number, AbortController>();
  entry.onClose(() => {
    for (const call of running.values()) call.abort();
    send({ type: 'error', code: 'session_closed', message: 'the session ended (idle for too long, or the server is stopping)' });
    ws.close(1001, 'session closed');
  });
  ws.on('close', () => void context.sessions.close(entry.id, 'the browser tab went away'));
  ws.on('error', (error) => context.logger.debug({ err: error, session: entry.id }, 'web socket error'));
  send({ type: 'ready', session_id: entry.id, tools: TOOLS.map((tool) => tool.name) });

  ws.on('message', (data, isBinary) => {
    let frame;
    try {
      frame = webClientFrameSchema.parse(JSON.parse(isBinary ? '' : (data as Buffer).toString('utf8')));
    } catch (error) {
      send({ type: 'error', code: 'bad_frame', message: `unreadable frame: ${(error as Error).message.slice(0, 500)}` });
      return;
    }
    if (frame.type === 'cancel') {
      running.get(frame.id)?.abort();
      return;
    }
    const { id } = frame;
    const tool = findTool(frame.tool);
    if (!tool) {
      send({ type: 'result', id, ok: false, error: { class: 'invalid_input', kind: null, message: `no tool named ${frame.tool}` } });
      return;
    }
    if (running.has(id)) {
      send({ type: 'result', id, ok: false, error: { class: 'invalid_input', kind: null, message: `call ${id} is already running` } });
      return;
    }
    const controller = new AbortController();
    running.set(id, controller);
    const end = entry.begin();
    void callTool(tool, frame.arguments ?? {}, entry.session.services, {
      signal: controller.signal,
      progress: (message) => send({ type: 'progress', id, message }),
    })
      .then((outcome) =>
        send(outcome.ok ? { type: 'result', id, ok: true, value: outcome.value } : { type: 'result', id, ok: false, error: outcome.error }),
      )
      .finally(() => {
        running.delete(id);
        end();
      });
  });
}

/** The web UI at /web: the page, its trace API and its socket; absent (404) when ENABLE_WEB_INTERFACE=false. */
export const webInterface: RouteModule = (context) => {
  if (!context.settings.webInterface) return {};
  const page = (pathname: string): HttpRoute => ({
    method: 'GET',
    path: pathname,
    tokenInQuery: true,
    handle: async (_req, res, url) => redirectToPage(url, res),
  });
  const socket: WebSocketRoute = { path: '/web/socket', handle: (ws) => serveSocket(context, ws) };
  return {
    routes: [
      page('/'),
      // The trace API is listed before `/web/*`, which would match it too.
      ...traceRoutes(context),
      {
        method: 'GET',
        path: '/web/*',
        // Checked by serveStatic itself: the token, or the cookie the page got with it (see ASSET_COOKIE).
        public: true,
        handle: async (req, res, url) => {
          if (url.pathname !== '/web') return serveStatic(context, req, res, url);
          checkPageAccess(context, req, url);
          redirectToPage(url, res);
        },
      },
    ],
    webSockets: [socket],
  };
};
