/**
 * What `/mcp` decides before it handles a request: which of its two protocols the request speaks, and whether its
 * Host and Origin headers may reach this server at all (DNS-rebinding protection). Pure functions of the request.
 */

/** MCP's Streamable HTTP (the SDK's transport) or OpenEnv's plain JSON-RPC (`answerOpenEnvJsonRpc`). */
export type McpEndpointProtocol = 'streamable-http' | 'openenv-jsonrpc';

export interface McpRequestFacts {
  method: string;
  /** The `Mcp-Session-Id` header. */
  sessionId: string | undefined;
  accept: string | undefined;
  /** The parsed JSON body, or undefined when there is none or it is not JSON. */
  body: unknown;
}

/** An `initialize` request, alone or in a batch. */
export function isInitializeMessage(body: unknown): boolean {
  const messages = Array.isArray(body) ? body : [body];
  return messages.some((m) => typeof m === 'object' && m !== null && (m as { method?: unknown }).method === 'initialize');
}

/**
 * Streamable HTTP is what MCP clients speak; everything else is OpenEnv's. An MCP client must send
 * `Accept: application/json, text/event-stream`, then `initialize`, then the `Mcp-Session-Id` it was given; OpenEnv's httpx
 * client POSTs plain JSON (`Accept: *\/*`) with methods MCP has no use for (`openenv/session/*`, `tools/*` with
 * `params.session_id`) and never a session header. So a request is MCP's when it is not a POST (OpenEnv only POSTs), carries
 * a session header, lists `text/event-stream` in Accept, or is an `initialize` (alone or in a batch: MCP's transport then
 * explains what is missing, e.g. 406 for a wrong Accept, where OpenEnv could only say "method not found").
 * Everything else, `{}` and unparseable bodies included, is OpenEnv's, answered with HTTP 200 and a JSON-RPC error.
 */
export function mcpEndpointProtocol(request: McpRequestFacts): McpEndpointProtocol {
  if (request.method !== 'POST') return 'streamable-http';
  if (request.sessionId !== undefined && request.sessionId !== '') return 'streamable-http';
  if (request.accept?.toLowerCase().includes('text/event-stream')) return 'streamable-http';
  return isInitializeMessage(request.body) ? 'streamable-http' : 'openenv-jsonrpc';
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '::1']);
const WILDCARD_BINDS = new Set(['0.0.0.0', '::']);

const HOST_AND_PORT = /^(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::\d{1,5})?$/i;

/** `Example.com:8000` → `example.com`, `[::1]:8000` → `::1`; undefined for anything that is not a host and a port. */
function hostnameOf(hostAndPort: string): string | undefined {
  const match = HOST_AND_PORT.exec(hostAndPort);
  return match ? bareHost(match[1]!) : undefined;
}

function bareHost(host: string): string {
  return host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
}

/**
 * Why a request must be refused (403) as a possible DNS-rebinding attack, or null when it may proceed. A page on
 * evil.example whose name was re-pointed at 127.0.0.1 reaches this server with `Host: evil.example` (and, from a
 * script, `Origin: http://evil.example`); so the Host must name the address the server is bound to (a loopback name,
 * or the configured HOST), and an Origin, when there is one, must be this very server or another loopback page. When
 * bound to every interface (HOST=0.0.0.0, as in Docker) the server cannot know the names it is reached by: any Host is
 * accepted, and only a cross-origin Origin is refused (the token is the protection there).
 */
export function rebindingRefusal(headers: { host: string | undefined; origin: string | undefined }, boundHost: string): string | null {
  const bound = bareHost(boundHost);
  const anyHost = WILDCARD_BINDS.has(bound);
  const allowed = new Set([...LOOPBACK_NAMES, bound]);
  const host = headers.host?.trim();
  if (!host) return anyHost ? null : 'a Host header is required';
  const hostname = hostnameOf(host);
  if (hostname === undefined) return `invalid Host header: ${host}`;
  if (!anyHost && !allowed.has(hostname)) return `invalid Host header: ${host}`;

  if (headers.origin === undefined) return null;
  let origin: URL;
  try {
    origin = new URL(headers.origin);
  } catch {
    return `invalid Origin header: ${headers.origin}`; // including "null", sent by sandboxed frames and file:// pages
  }
  if (origin.host.toLowerCase() === host.toLowerCase()) return null;
  if (!anyHost && allowed.has(bareHost(origin.hostname))) return null;
  return `invalid Origin header: ${headers.origin}`;
}
