import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createMcpServer } from '../../mcp/server.js';
import { answerOpenEnvJsonRpc, JSON_RPC_PARSE_ERROR } from '../openenv/jsonrpc.js';
import { HttpError, readBody, sendJson } from './body.js';
import { isInitializeMessage, mcpEndpointProtocol, rebindingRefusal } from './mcp-dispatch.js';
import type { RouteModule } from './server.js';
import { CapacityError, type HttpSession } from './sessions.js';

/** One MCP session: the registry's session, the SDK transport its requests go through, and the server bound to its episode. */
interface McpConnection {
  entry: HttpSession;
  transport: StreamableHTTPServerTransport;
  server: McpServer;
}

type JsonRpcId = string | number | null;

/** A JSON-RPC error as the SDK's transport words its own (`id: null` unless the request's is known). */
function jsonRpcError(code: number, message: string, id: JsonRpcId = null, data?: unknown): Record<string, unknown> {
  return { jsonrpc: '2.0', error: { code, message, ...(data === undefined ? {} : { data }) }, id };
}

function requestId(message: unknown): JsonRpcId {
  const id = (message as { id?: unknown } | null)?.id;
  return typeof id === 'string' || typeof id === 'number' ? id : null;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** The body as JSON: `{ parsed: false }` when it is empty or not JSON (each protocol answers that its own way). */
function parseJson(body: Buffer): { parsed: true; value: unknown } | { parsed: false } {
  if (body.length === 0) return { parsed: false };
  try {
    return { parsed: true, value: JSON.parse(body.toString('utf8')) };
  } catch {
    return { parsed: false };
  }
}

/**
 * `/mcp`: MCP's Streamable HTTP (the SDK's own transport, one per MCP session, each session one episode) and OpenEnv's
 * plain JSON-RPC on the same path, told apart by `mcpEndpointProtocol`. Both sit behind the DNS-rebinding check and the
 * body limit. An MCP session lives in the shared registry: it counts against MAX_CONCURRENT_ENVS, a request in flight
 * (a rollout streaming its progress over SSE) keeps it from being reaped, and when the registry closes it (DELETE, idle,
 * shutdown) its transport and server close too.
 */
export const mcpEndpoint: RouteModule = (context) => {
  const connections = new Map<string, McpConnection>();
  const log = context.logger.child({ route: '/mcp' });

  async function openConnection(req: IncomingMessage, res: ServerResponse, body: unknown): Promise<void> {
    let entry: HttpSession;
    try {
      entry = context.sessions.open('mcp');
    } catch (error) {
      if (!(error instanceof CapacityError)) throw error;
      const data = { active_sessions: error.activeSessions, max_sessions: error.maxSessions };
      sendJson(res, 503, jsonRpcError(-32000, error.message, requestId(body), data));
      return;
    }
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => entry.id,
      // Awaited by the transport, so DELETE answers once the sandbox is gone.
      onsessionclosed: (id) => context.sessions.close(id, 'ended by its client (DELETE)'),
    });
    transport.onerror = (error) => log.debug({ session: entry.id, err: error }, 'MCP transport refused a request');
    const server = createMcpServer(entry.session.services, context.runtime.traces);
    const connection = { entry, transport, server };
    connections.set(entry.id, connection);
    entry.onClose(() => {
      connections.delete(entry.id);
      void server.close().catch(() => undefined); // closes the transport and its open streams
    });
    try {
      await server.connect(transport);
      await handleIn(connection, req, res, body);
    } finally {
      // An initialize the transport refused (a wrong Accept header, a malformed request) opened nothing the client can
      // name: its slot is given back at once.
      if (transport.sessionId === undefined) await context.sessions.close(entry.id, 'its initialize was refused');
    }
  }

  async function handleIn(connection: McpConnection, req: IncomingMessage, res: ServerResponse, body: unknown): Promise<void> {
    // The standalone GET stream stays open as long as the client likes: it shows the client is there, but only calls
    // (POST) hold the session open, so a client that forgets its session still has it reaped.
    const end = req.method === 'GET' ? () => connection.entry.touch() : connection.entry.begin();
    connection.entry.touch();
    res.once('close', end);
    await connection.transport.handleRequest(req, res, body);
  }

  async function serveStreamableHttp(req: IncomingMessage, res: ServerResponse, body: unknown, bodyIsJson: boolean): Promise<void> {
    if (req.method === 'POST' && !bodyIsJson) {
      sendJson(res, 400, jsonRpcError(-32700, 'Parse error: Invalid JSON'));
      return;
    }
    const sessionId = header(req, 'mcp-session-id');
    if (sessionId) {
      // Only this route's sessions: the id of a WebSocket or OpenEnv session is as unknown here as a made-up one.
      const connection = connections.get(sessionId);
      if (!connection) {
        sendJson(res, 404, jsonRpcError(-32001, 'Session not found', requestId(body)));
        return;
      }
      await handleIn(connection, req, res, body);
      return;
    }
    if (req.method === 'POST' && isInitializeMessage(body)) {
      await openConnection(req, res, body);
      return;
    }
    sendJson(res, 400, jsonRpcError(-32000, 'Bad Request: Mcp-Session-Id header is required', requestId(body)));
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'POST' && req.method !== 'GET' && req.method !== 'DELETE') {
      req.resume();
      sendJson(res, 405, jsonRpcError(-32000, 'Method not allowed.'), { allow: 'GET, POST, DELETE' });
      return;
    }
    const refusal = rebindingRefusal({ host: header(req, 'host'), origin: header(req, 'origin') }, context.settings.host);
    if (refusal !== null) {
      log.warn({ host: req.headers.host, origin: req.headers.origin }, 'refused a possible DNS-rebinding request');
      throw new HttpError(403, refusal, jsonRpcError(-32000, `Forbidden: ${refusal}`));
    }
    const json = req.method === 'POST' ? parseJson(await readBody(req, context.settings.maxBodyBytes)) : { parsed: false as const };
    const body = json.parsed ? json.value : undefined;
    const protocol = mcpEndpointProtocol({
      method: req.method,
      sessionId: header(req, 'mcp-session-id'),
      accept: header(req, 'accept'),
      body,
    });
    if (protocol === 'streamable-http') return serveStreamableHttp(req, res, body, json.parsed);
    // OpenEnv answers every JSON-RPC outcome, a body that is not JSON included, with HTTP 200.
    sendJson(res, 200, json.parsed ? await answerOpenEnvJsonRpc(body, context) : JSON_RPC_PARSE_ERROR);
  }

  return { routes: [{ method: '*', path: '/mcp', handle }] };
};
