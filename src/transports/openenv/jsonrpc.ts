import type { HttpContext } from '../http/server.js';
import { CapacityError, type HttpSession } from '../http/sessions.js';
import { callToolForJsonRpc } from './actions.js';
import { mcpToolListing } from '../../mcp/tools.js';
import { JSON_RPC, jsonRpcRequestSchema, type JsonRpcId } from './wire.js';

/**
 * OpenEnv's plain JSON-RPC (§1.8 of openenv.md), as POST /mcp, WebSocket /mcp and the /ws `mcp` frame speak it: tools/list,
 * tools/call, openenv/session/create|close. Every failure is a JSON-RPC error object, never a throw.
 */

class JsonRpcFailure extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data: unknown = null,
  ) {
    super(message);
  }
}

function success(id: JsonRpcId, result: unknown): Record<string, unknown> {
  return { jsonrpc: '2.0', id, result };
}

export function jsonRpcError(id: JsonRpcId, code: number, message: string, data: unknown = null): Record<string, unknown> {
  return { jsonrpc: '2.0', id, error: { code, message, data } };
}

/** A frame or body that is not JSON: -32700 with a null id, as OpenEnv answers. */
export const JSON_RPC_PARSE_ERROR = jsonRpcError(null, JSON_RPC.PARSE_ERROR, 'Parse error');

function capacityFailure(error: CapacityError): JsonRpcFailure {
  return new JsonRpcFailure(JSON_RPC.SERVER_ERROR, error.message, {
    active_sessions: error.activeSessions,
    max_sessions: error.maxSessions,
  });
}

function openSession(context: HttpContext): HttpSession {
  try {
    return context.sessions.open('openenv-rpc');
  } catch (error) {
    if (error instanceof CapacityError) throw capacityFailure(error);
    throw error;
  }
}

function sessionById(context: HttpContext, sessionId: unknown): HttpSession {
  const entry = typeof sessionId === 'string' ? context.sessions.get(sessionId, 'openenv-rpc') : undefined;
  if (!entry) throw new JsonRpcFailure(JSON_RPC.INVALID_PARAMS, `Unknown session_id: ${String(sessionId)}`);
  return entry;
}

/**
 * Runs `work` on the session a call names (`session_id`), else on the connection's own session (`bound`: /ws, WebSocket
 * /mcp), else on a throwaway one closed right after, as OpenEnv's stateless /mcp does.
 */
async function withSession<T>(
  context: HttpContext,
  params: Record<string, unknown>,
  bound: HttpSession | undefined,
  work: (entry: HttpSession) => Promise<T>,
): Promise<T> {
  if (params.session_id !== undefined && params.session_id !== null) return work(sessionById(context, params.session_id));
  if (bound) return work(bound);
  const entry = openSession(context);
  try {
    return await work(entry);
  } finally {
    await context.sessions.close(entry.id, 'stateless JSON-RPC call done');
  }
}

async function dispatch(
  method: string,
  params: Record<string, unknown>,
  context: HttpContext,
  bound: HttpSession | undefined,
): Promise<unknown> {
  switch (method) {
    case 'tools/list':
      // Validated like a call (an unknown session_id is an error) though listing needs no episode.
      if (params.session_id !== undefined && params.session_id !== null) sessionById(context, params.session_id);
      return { tools: mcpToolListing() };
    case 'tools/call': {
      if (typeof params.name !== 'string') throw new JsonRpcFailure(JSON_RPC.INVALID_PARAMS, "Missing 'name' in params");
      const name = params.name;
      const outcome = await withSession(context, params, bound, (entry) => callToolForJsonRpc(entry, name, params.arguments ?? {}));
      if (!outcome.ok) throw new JsonRpcFailure(JSON_RPC.INTERNAL_ERROR, outcome.message);
      return outcome.result;
    }
    case 'openenv/session/create':
      return { session_id: openSession(context).id };
    case 'openenv/session/close': {
      const entry = sessionById(context, params.session_id);
      await context.sessions.close(entry.id, 'closed by its client');
      return { session_id: entry.id, closed: true };
    }
    default:
      throw new JsonRpcFailure(JSON_RPC.METHOD_NOT_FOUND, `Method not found: ${method}`);
  }
}

/** Answers one JSON-RPC request; `bound` is the session of the connection it came on, if any. */
export async function answerJsonRpc(message: unknown, context: HttpContext, bound?: HttpSession): Promise<Record<string, unknown>> {
  const parsed = jsonRpcRequestSchema.safeParse(message);
  if (!parsed.success) {
    const rawId = (message as { id?: unknown } | null)?.id;
    const id = typeof rawId === 'string' || typeof rawId === 'number' ? rawId : null;
    const detail = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(request)'}: ${issue.message}`).join('; ');
    return jsonRpcError(id, JSON_RPC.INVALID_REQUEST, `Invalid request: ${detail}`);
  }
  const { method, params = {}, id = null } = parsed.data;
  if (params === null || typeof params !== 'object' || Array.isArray(params)) {
    return jsonRpcError(id, JSON_RPC.INVALID_PARAMS, 'Params must be an object');
  }
  try {
    return success(id, await dispatch(method, params as Record<string, unknown>, context, bound));
  } catch (error) {
    if (error instanceof JsonRpcFailure) return jsonRpcError(id, error.code, error.message, error.data);
    context.logger.error({ err: error, method }, 'OpenEnv JSON-RPC call failed');
    return jsonRpcError(id, JSON_RPC.INTERNAL_ERROR, error instanceof Error ? error.message : String(error));
  }
}

/**
 * OpenEnv's JSON-RPC over HTTP (POST /mcp without MCP's Streamable HTTP handshake): `session_id` in params names an
 * `openenv/session/create` session; without one, each call runs on a throwaway session.
 */
export async function answerOpenEnvJsonRpc(message: unknown, context: HttpContext): Promise<Record<string, unknown>> {
  return answerJsonRpc(message, context);
}
