import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { RolloutBudget, type BudgetLimits, type BudgetName } from './budget.js';
import { injectFields, refusedInjection, stripInjected, type Injection, type InjectionPolicy } from './injection.js';
import { appendMembers } from './json-text.js';
import { relayStream } from './stream-relay.js';
import { TurnAssembler } from './turn-assembler.js';
import { summarizeTurn, type AssembledCompletion, type ProxyTurn, type ProxyTurnSummary } from './types.js';

/**
 * The transparent recording proxy between the agent and its OpenAI-compatible endpoint. It streams
 * every response through as it arrives, and on the side records each LLM call: the request, the
 * reassembled answer, timing, and, by asking the upstream for logprobs and token ids that the agent
 * never requested, the token-level data a trainer needs (removed again from what the agent sees).
 *
 * It knows nothing of sandboxes or MCP: connections reach it through whatever channel a sandbox backend
 * offers (`accept`), or over TCP when it runs on its own (`opencode-env proxy`).
 */

export interface RecordingProxyOptions extends InjectionPolicy {
  /** Base URL of the real endpoint, e.g. `http://gpu-box:8000/v1`. */
  upstreamBaseUrl: string;
  /** Sent upstream as a bearer token in place of whatever the agent sent. Never recorded. */
  apiKey?: string;
  /** false: relay bytes only (black-box mode): no injection, no turns. */
  record: boolean;
  /** After this many upstream failures in a row (no answer, or 5xx), answer the agent with a non-retryable error. */
  maxConsecutiveFailures: number;
  /** Larger request bodies are refused (413) without reaching the upstream; so are larger non-streamed answers (502). */
  maxRequestBytes?: number;
  /** Also listen on TCP (for the standalone proxy); without it, connections come only through `accept`. */
  listen?: { port: number; host?: string };
  /** Each recorded turn, in full, once: the proxy itself keeps only summaries, so a long run's memory stays small. */
  onTurn?: (turn: ProxyTurn) => void;
  /** The agent's LLM budget; past it, its next call gets a final answer. Tokens are counted only when recording. */
  budget?: BudgetLimits;
}

export interface RecordingProxy {
  /** `http://host:port` when listening on TCP, else null. */
  address: string | null;
  /** Serves one connection that arrived some other way (a sandbox backend's LLM channel). */
  accept(connection: Duplex): void;
  /** Summaries of the recorded turns, in order; the full turns went to `onTurn`. */
  readonly turns: ProxyTurnSummary[];
  /** Set once the proxy stopped contacting a failing upstream. */
  readonly gaveUp: string | null;
  /** Set once the agent's budget ended its run (a call past it was answered with a final stop). */
  readonly budgetEnded: BudgetName | null;
  /** Upstream answers so far: successes (status < 400) and failures (no answer or 5xx), recorded or relayed; requests refused here. */
  readonly stats: { requests: number; successes: number; failures: number; refused: number };
  /** Recent proxy log lines, newest last. */
  logTail(): string;
  close(): Promise<void>;
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'host',
  'content-length',
  'accept-encoding',
  'authorization',
]);
const ERROR_BODY_LIMIT = 4096;
const LOG_LINES = 200;
const DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024;
/** How much of a refused body is read and discarded (in request limits) before its connection is dropped. */
const DRAIN_LIMIT_FACTOR = 8;

/**
 * The only routes relayed: what an agent needs of a model API. Anything else (files, fine-tuning, admin, or a
 * path that escapes /v1) would reach the upstream with the real key, so it is answered here.
 */
const ALLOWED_ROUTES: ReadonlyArray<{ method: string; path: string; upstreamPath: string }> = [
  { method: 'POST', path: '/v1/chat/completions', upstreamPath: '/chat/completions' },
  { method: 'GET', path: '/v1/models', upstreamPath: '/models' },
];

function findRoute(method: string | undefined, url: string | undefined) {
  // Compared as raw text: no decoding or normalisation can turn a refused path into an allowed one.
  const pathname = (url ?? '').split('?', 1)[0];
  const byPath = ALLOWED_ROUTES.filter((route) => route.path === pathname);
  if (byPath.length === 0) return { route: null, status: 404 } as const;
  const route = byPath.find((r) => r.method === method);
  return route ? ({ route, status: 200 } as const) : ({ route: null, status: 405 } as const);
}

class BodyTooLarge extends Error {
  constructor(readonly why: 'limit' | 'budget') {
    super(why === 'limit' ? 'body over the size limit' : 'too many large bodies at once');
  }
}

/** Bytes of request bodies held at once, across all of a proxy's connections: what bounds its memory. */
interface BodyBudget {
  used: number;
  readonly limit: number;
}

/**
 * Reads a whole body, refusing (BodyTooLarge) once it passes `limit` bytes or would take the shared `budget`
 * past its limit; the rest is discarded, not kept. The caller gives the bytes back to the budget when done.
 */
function readBody(stream: http.IncomingMessage, limit = Infinity, budget?: BodyBudget): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (budget) budget.used += chunk.length;
      if (size > limit || (budget && budget.used > budget.limit)) {
        stream.off('data', onData);
        if (budget) budget.used -= size;
        chunks.length = 0;
        stream.resume();
        reject(new BodyTooLarge(size > limit ? 'limit' : 'budget'));
        return;
      }
      chunks.push(chunk);
    };
    stream.on('data', onData);
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
}

function parseJsonObject(raw: Buffer): Record<string, any> | null {
  try {
    const parsed: unknown = JSON.parse(raw.toString('utf8'));
    return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, any>) : null;
  } catch {
    return null;
  }
}

/**
 * The body sent upstream: the agent's own bytes with the injected fields appended when injection only added fields
 * (the common case: re-serialising a 30 KB conversation per call costs more than the rest of the request's handling);
 * re-serialised when it changed one (a capped max_tokens, merged chat_template_kwargs). The upstream parses the same
 * object either way, and `injected` is what is recorded.
 */
function upstreamBody(raw: Buffer, original: Record<string, unknown>, injected: Record<string, unknown>): Buffer {
  const added: Record<string, unknown> = {};
  for (const key of Object.keys(injected)) {
    if (!Object.hasOwn(original, key)) added[key] = injected[key];
    else if (injected[key] !== original[key]) return Buffer.from(JSON.stringify(injected));
  }
  return appendMembers(raw, added);
}

function turnKind(body: Record<string, unknown>): ProxyTurn['kind'] {
  if (Array.isArray(body.tools) && body.tools.length > 0) return 'agent';
  const messages = Array.isArray(body.messages) ? (body.messages as Array<{ role?: string; content?: unknown }>) : [];
  const system = messages.find((m) => m.role === 'system');
  return typeof system?.content === 'string' && system.content.startsWith('You are a title generator') ? 'title' : 'auxiliary';
}

function secondsSince(start: number): number {
  return Math.round((performance.now() - start) * 1000) / 1e6;
}

export async function startRecordingProxy(options: RecordingProxyOptions): Promise<RecordingProxy> {
  const upstream = new URL(options.upstreamBaseUrl.replace(/\/+$/, ''));
  const client = upstream.protocol === 'https:' ? https : http;
  const agent = new client.Agent({ keepAlive: true, maxSockets: 64 });
  const turns: ProxyTurnSummary[] = [];
  const log: string[] = [];
  let consecutiveFailures = 0;
  const stats = { requests: 0, successes: 0, failures: 0, refused: 0 };
  const maxRequestBytes = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
  // Room for two requests at the limit (opencode sends a title request beside the agent's): more waits for none.
  const bodyBudget: BodyBudget = { used: 0, limit: 2 * maxRequestBytes };
  let gaveUp: string | null = null;
  const budget = new RolloutBudget(options.budget ?? {});
  let turnCounter = 0;
  /** Injections the upstream rejected once; not tried again. */
  const refused = new Set<Injection>();

  const note = (line: string) => {
    log.push(`${new Date().toISOString()} ${line}`);
    if (log.length > LOG_LINES) log.shift();
  };

  /** `<upstream base>` + the route's path; the agent's query string is dropped, the configured URL's own is kept. */
  const upstreamUrls = new Map<string, URL>();
  function upstreamUrl(upstreamPath: string): URL {
    let target = upstreamUrls.get(upstreamPath);
    if (!target) {
      target = new URL(upstream.href);
      target.pathname = `${upstream.pathname.replace(/\/+$/, '')}${upstreamPath}`;
      upstreamUrls.set(upstreamPath, target);
    }
    return target;
  }

  function forward(req: http.IncomingMessage, upstreamPath: string, body: Buffer, signal: AbortSignal): Promise<http.IncomingMessage> {
    const headers: http.OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(name) && value !== undefined) headers[name] = value;
    headers['accept-encoding'] = 'identity'; // recorded bodies must be plain text
    if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`;
    if (body.length > 0 || req.method === 'POST') headers['content-length'] = body.length;
    const target = upstreamUrl(upstreamPath);
    return new Promise((resolve, reject) => {
      const upstreamReq = client.request(target, { method: req.method, headers, agent, signal }, resolve);
      upstreamReq.on('error', reject);
      upstreamReq.end(body);
    });
  }

  function respondError(res: http.ServerResponse, status: number, message: string, type: string): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const text = JSON.stringify({ error: { message, type, code: status } });
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  /** Books one upstream answer (status null: none came); returns true when the proxy should now give up on the upstream. */
  function bookUpstreamOutcome(status: number | null, detail?: string): boolean {
    if (status !== null && status < 500 && detail === undefined) {
      consecutiveFailures = 0;
      if (status < 400) stats.successes += 1;
      return false;
    }
    const description = status === null ? `no answer: ${detail}` : detail !== undefined ? `HTTP ${status}, ${detail}` : `HTTP ${status}`;
    consecutiveFailures += 1;
    stats.failures += 1;
    note(`upstream failure ${consecutiveFailures}/${options.maxConsecutiveFailures}: ${description}`);
    if (consecutiveFailures >= options.maxConsecutiveFailures && gaveUp === null) {
      gaveUp = `the LLM endpoint failed ${consecutiveFailures} times in a row (last: ${description})`;
      note(`giving up: ${gaveUp}`);
    }
    return gaveUp !== null;
  }

  /** The agent's answer when the upstream could not be reached at all. */
  function answerUnreachable(res: http.ServerResponse, message: string, request: Record<string, any> | null): void {
    if (bookUpstreamOutcome(null, message)) return giveUpResponse(res, request);
    respondError(res, 502, `opencode-env proxy: upstream unreachable: ${message}`, 'upstream_unreachable');
  }

  /** Upstream response headers fit to pass on (hop-by-hop ones dropped; the length too when the body is rewritten). */
  function passableHeaders(upstreamRes: http.IncomingMessage, bodyRewritten: boolean): http.IncomingHttpHeaders {
    const headers = { ...upstreamRes.headers };
    for (const name of ['connection', 'keep-alive', 'transfer-encoding', ...(bodyRewritten ? ['content-length'] : [])])
      delete headers[name];
    return headers;
  }

  /**
   * Once the upstream is given up on, the agent gets a normal, final answer saying so. An HTTP error would
   * not do: opencode keeps retrying for over a minute once a retry cycle has started, whatever the status.
   * The rollout is failed by the caller (see `gaveUp`); the synthetic answer is never recorded as a turn.
   */
  function giveUpResponse(res: http.ServerResponse, request: Record<string, any> | null): void {
    finalAnswer(res, request, `[opencode-env] ${gaveUp}. Stopping this run.`, 'opencode-env-gave-up');
  }

  /** A normal, final assistant answer (no tool calls), which ends opencode's run: streamed if the request asked for that. */
  function finalAnswer(res: http.ServerResponse, request: Record<string, any> | null, content: string, id: string): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const created = Math.floor(Date.now() / 1000);
    const model = typeof request?.model === 'string' ? request.model : 'unknown';
    if (request?.stream === true) {
      const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
        `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices, ...extra })}\n\n`;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write(chunk([{ index: 0, delta: { role: 'assistant', content }, finish_reason: null }]));
      res.write(chunk([{ index: 0, delta: {}, finish_reason: 'stop' }]));
      if (request.stream_options?.include_usage)
        res.write(chunk([], { usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 } }));
      res.end('data: [DONE]\n\n');
      return;
    }
    const text = JSON.stringify({
      id,
      object: 'chat.completion',
      created,
      model,
      choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
    });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  async function relay(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    upstreamPath: string,
    body: Buffer,
    signal: AbortSignal,
  ): Promise<void> {
    let upstreamRes: http.IncomingMessage;
    try {
      upstreamRes = await forward(req, upstreamPath, body, signal);
    } catch (error) {
      if (!signal.aborted) answerUnreachable(res, (error as Error).message, parseJsonObject(body));
      return;
    }
    const status = upstreamRes.statusCode ?? 502;
    if (bookUpstreamOutcome(status)) {
      upstreamRes.resume();
      return giveUpResponse(res, parseJsonObject(body));
    }
    res.writeHead(status, passableHeaders(upstreamRes, false));
    upstreamRes.pipe(res);
  }

  async function handleChat(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    upstreamPath: string,
    original: Record<string, any>,
    raw: Buffer,
    signal: AbortSignal,
  ): Promise<void> {
    const started = performance.now();
    const turn: Omit<ProxyTurn, keyof AssembledCompletion> = {
      turn: ++turnCounter,
      timestamp: new Date().toISOString(),
      method: req.method ?? 'POST',
      path: req.url ?? '',
      kind: turnKind(original),
      session_id: (req.headers['x-session-id'] ?? req.headers['x-opencode-session'] ?? null) as string | null,
      stream: original.stream === true,
      request: null,
      injected: [],
      latency_s: 0,
      ttfb_s: null,
      upstream_status: null,
      upstream_error: null,
    };
    const assembler = new TurnAssembler();
    const finishTurn = () => {
      const recorded: ProxyTurn = { ...turn, ...assembler.finish(), latency_s: secondsSince(started) };
      turns.push(summarizeTurn(recorded));
      note(
        `turn ${recorded.turn} ${recorded.kind} ${recorded.upstream_status ?? '-'} ${recorded.latency_s.toFixed(3)}s finish=${recorded.finish_reason ?? '-'} tokens=${recorded.completion_token_ids.length || recorded.completion_tokens.length}` +
          (recorded.upstream_error ? ` error=${recorded.upstream_error.type}: ${recorded.upstream_error.message}` : ''),
      );
      if (recorded.kind === 'agent') budget.record(recorded.usage);
      options.onTurn?.(recorded);
    };

    // Send upstream, dropping injections the upstream refuses (e.g. return_token_ids on a non-vLLM server).
    let upstreamRes: http.IncomingMessage;
    let injected: Injection[];
    let bufferedErrorBody: string | null = null;
    for (;;) {
      const prepared = injectFields(original, options, refused);
      injected = prepared.injected;
      turn.injected = [...prepared.injected, ...prepared.extras];
      turn.request = prepared.body;
      try {
        upstreamRes = await forward(req, upstreamPath, upstreamBody(raw, original, prepared.body), signal);
      } catch (error) {
        if (signal.aborted) return;
        const message = (error as Error).message;
        turn.upstream_error = { type: 'connection', message };
        finishTurn();
        return answerUnreachable(res, message, original);
      }
      if (upstreamRes.statusCode === 400 && injected.length > 0) {
        bufferedErrorBody = (await readBody(upstreamRes, maxRequestBytes)).toString('utf8');
        // Only a complaint about a field we added is a refusal; any other 400 is the agent's to see.
        const dropped = refusedInjection(bufferedErrorBody, injected);
        if (dropped) {
          refused.add(dropped);
          note(`upstream refused ${dropped}; retrying without it: ${bufferedErrorBody.slice(0, 300)}`);
          bufferedErrorBody = null;
          continue;
        }
      }
      break;
    }
    const status = upstreamRes.statusCode ?? 502;
    turn.upstream_status = status;
    turn.ttfb_s = secondsSince(started);
    const contentType = String(upstreamRes.headers['content-type'] ?? '');
    const headers = passableHeaders(upstreamRes, true);
    // A successful status is booked once its body is in: a 200 whose stream is garbage is an outage too.
    const givingUp = status >= 400 ? bookUpstreamOutcome(status) : false;
    const bookAnswer = () => {
      const broken = turn.upstream_error && !signal.aborted ? turn.upstream_error.message : undefined;
      bookUpstreamOutcome(status, broken);
    };

    if (status >= 400) {
      const errorBody = bufferedErrorBody ?? (await readBody(upstreamRes, maxRequestBytes)).toString('utf8');
      turn.upstream_error = { type: 'http', status, message: `HTTP ${status}`, body: errorBody.slice(0, ERROR_BODY_LIMIT) };
      finishTurn();
      if (givingUp) return giveUpResponse(res, original);
      res.writeHead(status, headers);
      res.end(errorBody);
      return;
    }

    if (!contentType.includes('text/event-stream')) {
      let text: string;
      try {
        text = (await readBody(upstreamRes, maxRequestBytes)).toString('utf8');
      } catch (error) {
        turn.upstream_error = { type: 'stream', message: `upstream answer unusable: ${(error as Error).message}` };
        bookAnswer();
        finishTurn();
        return respondError(res, 502, `opencode-env proxy: ${turn.upstream_error.message}`, 'upstream_too_large');
      }
      let out = text;
      try {
        const payload = JSON.parse(text);
        assembler.addResponse(payload);
        out = injected.length > 0 ? JSON.stringify(stripInjected(payload, injected)) : text;
      } catch (error) {
        turn.upstream_error = {
          type: 'malformed_stream',
          message: `unparseable JSON response: ${(error as Error).message}`,
          body: text.slice(0, ERROR_BODY_LIMIT),
        };
      }
      res.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(out) });
      res.end(out);
      bookAnswer();
      finishTurn();
      return;
    }

    res.writeHead(status, headers);
    const broken = await relayStream(upstreamRes, res, injected, (data, parsed) => {
      if (parsed.ok) return assembler.addChunk(parsed.payload);
      turn.upstream_error ??= {
        type: 'malformed_stream',
        message: `unparseable SSE data: ${parsed.error.message}`,
        body: data.slice(0, ERROR_BODY_LIMIT),
      };
    });
    if (broken !== null) turn.upstream_error ??= { type: 'stream', message: broken };
    bookAnswer();
    finishTurn();
  }

  /** A request this proxy will not relay: a turn is recorded for chat requests, so a trace shows what was refused. */
  function refuse(req: http.IncomingMessage, res: http.ServerResponse, status: number, message: string, chat: boolean): void {
    stats.refused += 1;
    note(`refused ${req.method} ${(req.url ?? '').slice(0, 200)}: ${message}`);
    if (chat) {
      const refusedTurn: ProxyTurn = {
        turn: ++turnCounter,
        timestamp: new Date().toISOString(),
        method: req.method ?? 'POST',
        path: (req.url ?? '').slice(0, 200),
        kind: 'auxiliary',
        session_id: null,
        stream: false,
        request: null,
        injected: [],
        latency_s: 0,
        ttfb_s: null,
        upstream_status: null,
        upstream_error: { type: 'refused', status, message },
        ...new TurnAssembler().finish(),
      };
      turns.push(summarizeTurn(refusedTurn));
      options.onTurn?.(refusedTurn);
    }
    const answer = () => respondError(res, status, `opencode-env proxy: ${message}`, 'refused');
    if (req.complete || req.readableEnded) return answer();
    // The rest of the body is read and thrown away before answering: the answer ends the connection when the client
    // asked for that, and body bytes arriving at a closed socket reset it, taking the unread answer with them (the
    // in-sandbox bridge then drops its client too). Bounded: past a few limits' worth, the connection is dropped.
    let discarded = 0;
    req.on('data', (chunk: Buffer) => {
      discarded += chunk.length;
      if (discarded > DRAIN_LIMIT_FACTOR * maxRequestBytes) req.socket.destroy();
    });
    req.once('end', answer);
    req.resume();
  }

  const server = http.createServer((req, res) => {
    // Hooked on the response: the request's own 'close' fires as soon as its body has been read.
    const abort = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    void (async () => {
      const { route, status } = findRoute(req.method, req.url);
      if (!route) {
        return refuse(
          req,
          res,
          status,
          status === 405 ? `${req.method} is not allowed on this path` : 'only the model API is served here',
          false,
        );
      }
      const isChat = route.upstreamPath === '/chat/completions';
      let raw: Buffer;
      try {
        raw = await readBody(req, maxRequestBytes, bodyBudget);
      } catch (error) {
        if (!(error instanceof BodyTooLarge)) throw error;
        if (error.why === 'budget') return refuse(req, res, 429, 'too many large requests at once; retry', isChat);
        return refuse(req, res, 413, `request body over the ${Math.round(maxRequestBytes / 1048576)} MiB limit`, isChat);
      }
      const held = raw.length;
      res.once('close', () => (bodyBudget.used -= held));
      if (gaveUp !== null) {
        const request = parseJsonObject(raw);
        note(`${req.method} ${req.url} (${request ? turnKind(request) : 'other'}) answered with a stop: the upstream was given up on`);
        return giveUpResponse(res, request);
      }
      // Parsed once, for the budget and for recording; a body relayed with neither is never parsed.
      const request = isChat && (options.record || budget.limited) ? parseJsonObject(raw) : null;
      // Past its budget, the agent's next call is answered here with a final stop (never recorded as a turn).
      if (request && turnKind(request) === 'agent' && !budget.admit()) {
        note(`${req.method} ${req.url} answered with a stop: ${budget.ended} reached (${budget.calls} calls, ${budget.tokens} tokens)`);
        return finalAnswer(res, request, budget.message(), 'opencode-env-budget');
      }
      stats.requests += 1;
      // A body that is not a JSON object goes through untouched: let the upstream answer it.
      if (options.record && request) return handleChat(req, res, route.upstreamPath, request, raw, abort.signal);
      return relay(req, res, route.upstreamPath, raw, abort.signal);
    })().catch((error: Error) => {
      note(`proxy error: ${error.message}`);
      respondError(res, 502, `opencode-env proxy error: ${error.message}`, 'proxy_error');
    });
  });
  // The agent keeps one connection alive for a whole run; closing it early makes it retry.
  server.keepAliveTimeout = 75_000;
  server.headersTimeout = 80_000;

  const accepted = new Set<Duplex>();
  let address: string | null = null;
  if (options.listen) {
    const { port, host = '127.0.0.1' } = options.listen;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, resolve);
    });
    address = `http://${host}:${(server.address() as AddressInfo).port}`;
  }
  note(
    `${address ? `listening on ${address}` : 'serving connections handed to it'}, upstream ${upstream.origin}${upstream.pathname}, ${options.record ? 'recording' : 'relay only'}`,
  );

  return {
    address,
    accept: (connection) => {
      // Tracked here: the server's own connection list exists only once it listens.
      accepted.add(connection);
      connection.once('close', () => accepted.delete(connection));
      // Any duplex stream works as a connection: node's HTTP server documents injecting them this way.
      server.emit('connection', connection);
    },
    turns,
    get gaveUp() {
      return gaveUp;
    },
    get budgetEnded() {
      return budget.ended;
    },
    stats,
    logTail: () => log.join('\n'),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        for (const connection of accepted) connection.destroy();
        agent.destroy();
        if (server.listening) server.close(() => resolve());
        else resolve();
      }),
  };
}
