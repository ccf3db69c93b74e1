import { appendFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { promptTokenIds, tokenize, topLogprobs, type FakeToken } from './fake-tokens.js';
import { fillPlaceholders, placeholdersFrom, turnFor, type Script, type ScriptedTurn } from './script.js';

/**
 * An OpenAI-compatible chat completions server that replays a script of assistant turns, streaming
 * exactly like vLLM does (role chunk, one token per chunk, tool-call deltas, finish chunk, usage chunk,
 * logprobs and token ids when asked), so rollouts run offline and deterministically.
 */

export interface ScriptedLlmOptions {
  script: Script;
  host?: string;
  port?: number;
  /** When set, requests must carry `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Appends every request received (path, headers without authorization, body) as a JSON line. */
  logFile?: string;
  /** Name reported by /v1/models and in responses. */
  model?: string;
}

export interface ScriptedLlm {
  url: string;
  port: number;
  /** Requests received so far, in order. */
  requests: ReceivedRequest[];
  close(): Promise<void>;
}

interface ReceivedRequest {
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

interface Emission {
  delta: (token: FakeToken) => Record<string, unknown>;
  tokens: FakeToken[];
}

/** The tokens in the order of `completionPieces` (fake-tokens.ts), which the toy chat template relies on. */
function buildEmissions(turn: ScriptedTurn, callIdPrefix: string): { emissions: Emission[]; finishReason: string } {
  const emissions: Emission[] = [];
  if (turn.reasoning) emissions.push({ tokens: tokenize(turn.reasoning), delta: (t) => ({ reasoning_content: t.token }) });
  if (turn.text) emissions.push({ tokens: tokenize(turn.text), delta: (t) => ({ content: t.token }) });
  (turn.tool_calls ?? []).forEach((call, index) => {
    const args = typeof call.arguments === 'string' ? call.arguments : JSON.stringify(call.arguments);
    const nameTokens = tokenize(call.name);
    emissions.push({
      tokens: nameTokens.slice(0, 1),
      delta: () => ({
        tool_calls: [{ index, id: `${callIdPrefix}_${index}`, type: 'function', function: { name: call.name, arguments: '' } }],
      }),
    });
    if (nameTokens.length > 1) emissions.push({ tokens: nameTokens.slice(1), delta: () => ({}) });
    emissions.push({ tokens: tokenize(args), delta: (t) => ({ tool_calls: [{ index, function: { arguments: t.token } }] }) });
  });
  const finishReason = turn.finish_reason ?? (turn.tool_calls?.length ? 'tool_calls' : 'stop');
  return { emissions, finishReason };
}

function redactHeaders(headers: http.IncomingHttpHeaders): Record<string, string | string[] | undefined> {
  const { authorization, ...rest } = headers;
  return { ...rest, ...(authorization ? { authorization: '[present]' } : {}) };
}

async function readBody(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export async function startScriptedLlm(options: ScriptedLlmOptions): Promise<ScriptedLlm> {
  const model = options.model ?? 'scripted-model';
  const requests: ReceivedRequest[] = [];
  let completionCounter = 0;

  async function handleChat(req: http.IncomingMessage, res: http.ServerResponse, body: any): Promise<void> {
    const script = options.script;
    if (script.error) {
      sendJson(res, script.error.status, {
        error: {
          message: script.error.message ?? `scripted error ${script.error.status}`,
          type: 'scripted_error',
          code: script.error.status,
        },
      });
      return;
    }
    const rejected = (script.reject_fields ?? []).find((field) => field in body);
    if (rejected) {
      sendJson(res, 400, {
        error: { message: `Unrecognized request argument supplied: ${rejected}`, type: 'invalid_request_error', param: rejected },
      });
      return;
    }
    const messages: Array<{ role: string; content?: unknown }> = Array.isArray(body.messages) ? body.messages : [];
    const isTitleRequest = !Array.isArray(body.tools) || body.tools.length === 0;
    const scripted = isTitleRequest ? { text: options.script.title } : turnFor(options.script, messages);
    const turn = fillPlaceholders(scripted, placeholdersFrom(messages));
    // Give up waiting when the client goes away, so a closed server leaves no timer behind.
    const gone = new AbortController();
    res.once('close', () => gone.abort());
    const pause = (ms: number | undefined) => (ms ? sleep(ms, true, { signal: gone.signal }).catch(() => false) : Promise.resolve(true));
    if (!(await pause(turn.delay_ms))) return;
    if (turn.error) {
      sendJson(res, turn.error.status, {
        error: { message: turn.error.message ?? `scripted error ${turn.error.status}`, type: 'scripted_error', code: turn.error.status },
      });
      return;
    }

    const id = `chatcmpl-scripted-${++completionCounter}`;
    const created = Math.floor(Date.now() / 1000);
    const wantLogprobs = body.logprobs === true;
    const topCount = Number.isInteger(body.top_logprobs) ? Number(body.top_logprobs) : 0;
    const wantTokenIds = body.return_token_ids === true;
    const { emissions, finishReason } = buildEmissions(turn, `call_${messages.filter((m) => m.role === 'assistant').length + 1}`);
    const promptIds = promptTokenIds(messages);
    const completionTokens = emissions.reduce((n, e) => n + e.tokens.length, 0);
    const usage = {
      prompt_tokens: promptIds.length,
      completion_tokens: completionTokens,
      total_tokens: promptIds.length + completionTokens,
    };
    const logprobsFor = (tokens: FakeToken[]) =>
      wantLogprobs
        ? {
            content: tokens.map((t) => ({
              token: t.token,
              logprob: t.logprob,
              bytes: [...Buffer.from(t.token, 'utf8')],
              top_logprobs: topLogprobs(t, topCount),
            })),
          }
        : null;

    if (body.stream !== true) {
      const allTokens = emissions.flatMap((e) => e.tokens);
      const message: Record<string, unknown> = { role: 'assistant', content: turn.text ?? null };
      if (turn.reasoning) message.reasoning_content = turn.reasoning;
      if (turn.tool_calls?.length) {
        message.tool_calls = turn.tool_calls.map((call, index) => ({
          id: `call_${index}`,
          type: 'function',
          function: { name: call.name, arguments: typeof call.arguments === 'string' ? call.arguments : JSON.stringify(call.arguments) },
        }));
      }
      sendJson(res, 200, {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [
          {
            index: 0,
            message,
            logprobs: logprobsFor(allTokens),
            finish_reason: finishReason,
            ...(wantTokenIds ? { token_ids: allTokens.map((t) => t.id) } : {}),
          },
        ],
        usage,
        ...(wantTokenIds ? { prompt_token_ids: promptIds } : {}),
      });
      return;
    }

    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    const send = (chunk: unknown) => res.write(`data: ${JSON.stringify(chunk)}\n\n`);
    const chunk = (choice: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      choices: [{ index: 0, logprobs: null, finish_reason: null, ...choice }],
      ...extra,
    });
    if (turn.malformed) {
      send(chunk({ delta: { role: 'assistant', content: '' } }));
      res.write('data: {"id": "broken", "choices": [{"delta": {"content": "unterminated\n\n');
      res.end('data: [DONE]\n\n');
      return;
    }
    send(chunk({ delta: { role: 'assistant', content: '' } }, wantTokenIds ? { prompt_token_ids: promptIds } : {}));
    for (const emission of emissions) {
      for (const token of emission.tokens) {
        if (!(await pause(turn.chunk_delay_ms))) return;
        send(chunk({ delta: emission.delta(token), logprobs: logprobsFor([token]), ...(wantTokenIds ? { token_ids: [token.id] } : {}) }));
      }
    }
    send(chunk({ delta: {}, finish_reason: finishReason }));
    if (body.stream_options?.include_usage) send({ id, object: 'chat.completion.chunk', created, model, choices: [], usage });
    res.end('data: [DONE]\n\n');
  }

  const server = http.createServer((req, res) => {
    void (async () => {
      const raw = await readBody(req);
      let body: any;
      try {
        body = raw ? JSON.parse(raw) : null;
      } catch {
        body = raw;
      }
      const received = { path: req.url ?? '', headers: redactHeaders(req.headers), body };
      requests.push(received);
      if (options.logFile) await appendFile(options.logFile, `${JSON.stringify(received)}\n`);

      if (options.apiKey && req.headers.authorization !== `Bearer ${options.apiKey}`) {
        sendJson(res, 401, { error: { message: 'invalid api key', type: 'authentication_error' } });
        return;
      }
      const path = (req.url ?? '').split('?')[0];
      if (req.method === 'GET' && (path === '/health' || path === '/v1/health')) return sendJson(res, 200, { status: 'ok' });
      if (req.method === 'GET' && path === '/v1/models')
        return sendJson(res, 200, { object: 'list', data: [{ id: model, object: 'model', owned_by: 'opencode-env' }] });
      if (req.method === 'POST' && path === '/v1/chat/completions' && body && typeof body === 'object') return handleChat(req, res, body);
      sendJson(res, 404, { error: { message: `no route for ${req.method} ${path}`, type: 'not_found' } });
    })().catch((error: Error) => {
      if (!res.headersSent) sendJson(res, 500, { error: { message: error.message } });
      else res.destroy(error);
    });
  });
  // Clients (opencode's Bun runtime) keep one connection alive for a whole run.
  server.keepAliveTimeout = 75_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${options.host ?? '127.0.0.1'}:${port}/v1`,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
