import type { IncomingMessage } from 'node:http';
import { WebSocket, type RawData } from 'ws';
import type { HttpContext, RouteModule } from '../http/server.js';
import { CapacityError, type HttpSession } from '../http/sessions.js';
import { OpenEnvActionError, parseStepAction, resetSession, sessionState, stepSession } from './actions.js';
import { answerJsonRpc, JSON_RPC_PARSE_ERROR, jsonRpcError } from './jsonrpc.js';
import {
  JSON_RPC,
  toValidationIssues,
  wsClientFrameSchemas,
  type WsClientFrameType,
  type WsErrorCode,
  type WsServerFrame,
} from './wire.js';

/**
 * OpenEnv over WebSocket: `/ws` (reset/step/state/close/mcp frames, the path every OpenEnv client uses) and `/mcp` (raw
 * JSON-RPC frames). One session per connection; its frames are answered one at a time, in order, as OpenEnv clients
 * wait for one reply per message. The session ends with the connection (its sandbox killed, rollouts cancelled).
 */

function send(socket: WebSocket, frame: WsServerFrame | Record<string, unknown>): void {
  if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
}

function errorFrame(code: WsErrorCode, message: string, extra: Record<string, unknown> = {}): WsServerFrame {
  return { type: 'error', data: { message, code, ...extra } };
}

/** What one connection shares across its frames. */
interface Connection {
  socket: WebSocket;
  entry: HttpSession;
  context: HttpContext;
  /** Aborted when the client goes away: its running call is cancelled. */
  gone: AbortController;
}

/**
 * Opens the connection's session, or, past the cap, tells the client in its protocol's words and closes the socket
 * (accepted first, as OpenEnv does). The session closes with the socket; a reaped session closes the socket.
 */
function openConnection(socket: WebSocket, context: HttpContext, refuse: (error: CapacityError) => void): Connection | null {
  let entry: HttpSession;
  try {
    entry = context.sessions.open('ws');
  } catch (error) {
    if (!(error instanceof CapacityError)) throw error;
    refuse(error);
    socket.close(1013, 'server at capacity');
    return null;
  }
  const gone = new AbortController();
  socket.on('close', () => {
    gone.abort(new Error('the client disconnected'));
    void context.sessions.close(entry.id, 'client disconnected');
  });
  socket.on('error', (error) => context.logger.debug({ err: error, session: entry.id }, 'WebSocket error'));
  // Reaped as idle, or the server is stopping: nobody is listening any more.
  entry.onClose(() => {
    if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) socket.terminate();
  });
  return { socket, entry, context, gone };
}

/** Handles frames strictly one after another (a rollout's step holds the next frame until it is answered). */
function inOrder(handle: (raw: RawData, isBinary: boolean) => Promise<void>, onFailure: (error: unknown) => void) {
  let queue = Promise.resolve();
  return (raw: RawData, isBinary: boolean) => {
    queue = queue.then(() => handle(raw, isBinary)).catch(onFailure);
  };
}

function textOf(raw: RawData): string {
  if (Array.isArray(raw)) return Buffer.concat(raw).toString('utf8');
  return Buffer.from(raw as ArrayBuffer).toString('utf8');
}

function parseJson(raw: RawData): { ok: true; value: unknown } | { ok: false; message: string } {
  try {
    return { ok: true, value: JSON.parse(textOf(raw)) };
  } catch (error) {
    return { ok: false, message: `Invalid JSON: ${(error as Error).message}` };
  }
}

/** A value as OpenEnv's f-string shows it: a missing type is `None`. */
function pythonText(value: unknown): string {
  if (typeof value === 'string') return value;
  return value === undefined || value === null ? 'None' : JSON.stringify(value);
}

const FRAME_TYPES = Object.keys(wsClientFrameSchemas) as WsClientFrameType[];

/** One /ws frame → at most one reply frame. Client mistakes get an error frame and the session continues. */
async function answerFrame(connection: Connection, raw: RawData): Promise<WsServerFrame | 'close' | null> {
  const json = parseJson(raw);
  if (!json.ok) return errorFrame('INVALID_JSON', json.message);
  const message = json.value;
  const type = message !== null && typeof message === 'object' ? (message as { type?: unknown }).type : undefined;
  if (typeof type !== 'string' || !FRAME_TYPES.includes(type as WsClientFrameType)) {
    return errorFrame('UNKNOWN_TYPE', `Unknown message type: ${pythonText(type)}`);
  }
  const parsed = wsClientFrameSchemas[type as WsClientFrameType].safeParse(message);
  if (!parsed.success) return errorFrame('VALIDATION_ERROR', 'Invalid message', { errors: toValidationIssues(parsed.error, message) });
  const frame = parsed.data;
  const { entry, gone } = connection;
  try {
    switch (frame.type) {
      case 'reset':
        return { type: 'observation', data: await resetSession(entry, frame.data) };
      case 'step': {
        const action = parseStepAction(frame.data, ['data']);
        if (!action.ok) return errorFrame('VALIDATION_ERROR', 'Invalid message', { errors: action.issues });
        return { type: 'observation', data: await stepSession(entry, action.action, { signal: gone.signal }) };
      }
      case 'state':
        return { type: 'state', data: await sessionState(entry) };
      case 'mcp':
        return { type: 'mcp', data: await answerJsonRpc(frame.data, connection.context, entry) };
      case 'close':
        return 'close';
    }
  } catch (error) {
    if (error instanceof OpenEnvActionError) return errorFrame('EXECUTION_ERROR', error.message);
    throw error;
  }
}

function serveOpenEnvSocket(socket: WebSocket, context: HttpContext): void {
  const connection = openConnection(socket, context, (error) =>
    send(socket, errorFrame('CAPACITY_REACHED', error.message, { active_sessions: error.activeSessions, max_sessions: error.maxSessions })),
  );
  if (!connection) return;
  const onMessage = inOrder(
    async (raw) => {
      if (socket.readyState !== WebSocket.OPEN) return;
      const reply = await answerFrame(connection, raw);
      if (reply === 'close') {
        socket.close(1000, 'closed by the client');
        await context.sessions.close(connection.entry.id, 'closed by its client');
      } else if (reply) send(socket, reply);
    },
    (error) => {
      // Not the client's fault and not a tool failure: a bug. Tell the client, end the session.
      context.logger.error({ err: error, session: connection.entry.id }, 'OpenEnv /ws frame failed');
      send(socket, errorFrame('SESSION_ERROR', error instanceof Error ? error.message : String(error)));
      socket.close(1011, 'session error');
    },
  );
  socket.on('message', onMessage);
}

function serveJsonRpcSocket(socket: WebSocket, context: HttpContext): void {
  const connection = openConnection(socket, context, (error) =>
    send(
      socket,
      jsonRpcError(null, JSON_RPC.SERVER_ERROR, error.message, { active_sessions: error.activeSessions, max_sessions: error.maxSessions }),
    ),
  );
  if (!connection) return;
  const onMessage = inOrder(
    async (raw) => {
      if (socket.readyState !== WebSocket.OPEN) return;
      const json = parseJson(raw);
      send(socket, json.ok ? await answerJsonRpc(json.value, context, connection.entry) : JSON_RPC_PARSE_ERROR);
    },
    (error) => {
      context.logger.error({ err: error, session: connection.entry.id }, 'OpenEnv WebSocket /mcp frame failed');
      socket.close(1011, 'session error');
    },
  );
  socket.on('message', onMessage);
}

/** WebSocket `/ws` and `/mcp`. */
export const openEnvWebSockets: RouteModule = (context) => ({
  webSockets: [
    { path: '/ws', handle: (socket: WebSocket, _req: IncomingMessage) => serveOpenEnvSocket(socket, context) },
    { path: '/mcp', handle: (socket: WebSocket) => serveJsonRpcSocket(socket, context) },
  ],
});
