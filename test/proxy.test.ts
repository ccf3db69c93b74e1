import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { stripInjected } from '../src/core/proxy/injection.js';
import { startRecordingProxy, type RecordingProxy, type RecordingProxyOptions } from '../src/core/proxy/recording-proxy.js';
import { eventData, SseSplitter } from '../src/core/proxy/sse.js';
import { TurnAssembler } from '../src/core/proxy/turn-assembler.js';
import type { ProxyTurn } from '../src/core/proxy/types.js';
import { tokenize } from '../src/scripted-llm/fake-tokens.js';
import { startScripted, type ScriptedLlm } from './helpers/scripted.js';
import { cliPath, makeSystemTempDir, removeDir, waitFor } from './helpers/server.js';

const TOOLS = [{ type: 'function', function: { name: 'write', parameters: { type: 'object', properties: {} } } }];

function chatBody(extra: Record<string, unknown> = {}) {
  return {
    model: 'scripted-model',
    stream: true,
    stream_options: { include_usage: true },
    max_tokens: 32000,
    tools: TOOLS,
    tool_choice: 'auto',
    messages: [
      { role: 'system', content: 'Working directory: /w' },
      { role: 'user', content: 'say hello' },
    ],
    ...extra,
  };
}

function dataPayloads(sse: string): any[] {
  return sse
    .split('\n\n')
    .map((event) => event.replace(/^data: /, ''))
    .filter((data) => data && data !== '[DONE]')
    .map((data) => JSON.parse(data));
}

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function setup(
  script: unknown,
  proxyOptions: Partial<RecordingProxyOptions> = {},
  llmOptions: { apiKey?: string } = {},
): Promise<{ llm: ScriptedLlm; proxy: RecordingProxy; turns: ProxyTurn[] }> {
  const llm = await startScripted(script, llmOptions);
  cleanups.push(() => llm.close());
  return { llm, ...(await recordingProxyFor(llm.url, proxyOptions)) };
}

/** A recording proxy on TCP in front of `upstreamBaseUrl`, with the turns it records. */
async function recordingProxyFor(
  upstreamBaseUrl: string,
  proxyOptions: Partial<RecordingProxyOptions> = {},
): Promise<{ proxy: RecordingProxy; turns: ProxyTurn[] }> {
  const turns: ProxyTurn[] = [];
  const proxy = await startRecordingProxy({
    upstreamBaseUrl,
    record: true,
    topLogprobs: 3,
    requestTokenIds: true,
    disableThinking: false,
    maxTokensCap: 4096,
    maxConsecutiveFailures: 3,
    listen: { port: 0 },
    onTurn: (turn) => turns.push(turn),
    ...proxyOptions,
  });
  cleanups.push(() => proxy.close());
  return { proxy, turns };
}

/** One request with the target sent exactly as given (no URL normalisation). */
function rawRequest(address: string, method: string, target: string): Promise<{ status: number }> {
  const { hostname, port } = new URL(address);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname, () => {
      socket.write(`${method} ${target} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}`);
    });
    let response = '';
    socket.on('data', (chunk: Buffer) => (response += chunk.toString('latin1')));
    socket.on('end', () => resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(response)?.[1] ?? 0) }));
    socket.on('error', reject);
  });
}

const post = (proxy: RecordingProxy, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${proxy.address}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });

describe('recording proxy', () => {
  it('records tokens, ids and logprobs it asked for, and strips them from what the client sees', async () => {
    const { llm, proxy, turns } = await setup({ turns: [{ text: 'Hello there, world.' }] });
    const response = await post(proxy, chatBody(), { authorization: 'Bearer placeholder', 'x-session-id': 'ses_1' });
    const sse = await response.text();
    assert.equal(response.status, 200);
    const payloads = dataPayloads(sse);
    assert.equal(payloads.map((p) => p.choices[0]?.delta?.content ?? '').join(''), 'Hello there, world.');
    assert.ok(!sse.includes('logprobs') && !sse.includes('token_ids'), 'nothing the client did not ask for');

    const [turn] = turns;
    assert.ok(turn);
    const expected = tokenize('Hello there, world.');
    assert.deepEqual(
      turn.completion_tokens,
      expected.map((t) => t.token),
    );
    assert.deepEqual(
      turn.completion_token_ids,
      expected.map((t) => t.id),
    );
    assert.deepEqual(
      turn.per_token_logps,
      expected.map((t) => t.logprob),
    );
    assert.equal(turn.top_logprobs[0]!.length, 3);
    assert.ok(turn.prompt_token_ids && turn.prompt_token_ids.length > 0);
    assert.equal(turn.response.content, 'Hello there, world.');
    assert.equal(turn.finish_reason, 'stop');
    assert.equal(turn.usage?.completion_tokens, expected.length);
    assert.equal(turn.session_id, 'ses_1');
    assert.equal(turn.kind, 'agent');
    assert.equal((turn.request as any).max_tokens, 4096, 'max_tokens is capped');
    assert.ok(!JSON.stringify(turn).includes('placeholder'), 'no Authorization in the record');
    assert.equal(llm.requests[0]!.headers.authorization, undefined, 'without a key, the client’s placeholder key is not forwarded');
  });

  it('leaves logprobs alone when the client asked for them itself', async () => {
    const { llm, proxy, turns } = await setup({ turns: [{ text: 'Hi.' }] });
    const sse = await (await post(proxy, chatBody({ logprobs: true, top_logprobs: 1 }))).text();
    assert.ok(
      dataPayloads(sse).some((p) => p.choices[0]?.logprobs?.content?.length),
      'the client gets the logprobs it asked for',
    );
    assert.ok(!sse.includes('token_ids'), 'but not the token ids it did not ask for');
    assert.equal(llm.requests[0]!.body.top_logprobs, 1);
    assert.deepEqual(turns[0]!.injected, ['return_token_ids', 'max_tokens']);
  });

  it('sends the real key upstream in place of the client’s', async () => {
    const { llm, proxy } = await setup({ turns: [{ text: 'ok' }] }, { apiKey: 'sk-upstream-key-123' }, { apiKey: 'sk-upstream-key-123' });
    const response = await post(proxy, chatBody(), { authorization: 'Bearer sandbox-placeholder' });
    assert.equal(response.status, 200);
    await response.text();
    assert.equal(llm.requests[0]!.headers.authorization, '[present]');
  });

  it('streams chunks through as they arrive instead of buffering the response', async () => {
    const { proxy, turns } = await setup({ turns: [{ text: 'one two three four five six', chunk_delay_ms: 100 }] });
    const response = await post(proxy, chatBody());
    const reader = response.body!.getReader();
    const first = await reader.read();
    assert.ok(first.value && first.value.length > 0);
    // A turn is recorded when the upstream's stream ends: the client already has bytes while it has not.
    assert.equal(turns.length, 0, 'the first bytes arrived before the upstream finished its response');
    while (!(await reader.read()).done) {
      // drain
    }
    await waitFor(() => turns.length === 1, 5000, 'the turn to be recorded');
    assert.equal(turns[0]!.response.content, 'one two three four five six');
  });

  it('reassembles tool calls and handles non-streamed responses', async () => {
    const { proxy, turns } = await setup({
      turns: [{ text: 'Writing.', tool_calls: [{ name: 'write', arguments: { filePath: '{{workdir}}/a.txt', content: 'A' } }] }],
    });
    const response = await post(proxy, chatBody({ stream: false }));
    const body = (await response.json()) as any;
    assert.equal(body.choices[0].message.tool_calls[0].function.name, 'write');
    assert.equal(body.choices[0].logprobs, undefined, 'stripped from the JSON too');
    assert.equal(body.prompt_token_ids, undefined);
    const turn = turns[0]!;
    assert.equal(turn.stream, false);
    assert.deepEqual(
      turn.response.tool_calls.map((c) => [c.name, JSON.parse(c.arguments)]),
      [['write', { filePath: '/w/a.txt', content: 'A' }]],
    );
    assert.ok(turn.completion_token_ids.length > 5);
  });

  it('drops an injection the upstream refuses, and does not try it again', async () => {
    const { llm, proxy, turns } = await setup({ turns: [{ text: 'fine' }], reject_fields: ['return_token_ids'] });
    for (let i = 0; i < 2; i++) {
      const response = await post(proxy, chatBody());
      assert.equal(response.status, 200);
      await response.text();
    }
    assert.deepEqual(
      turns.map((t) => t.injected.includes('return_token_ids')),
      [false, false],
    );
    assert.ok(
      turns.every((t) => t.per_token_logps.length > 0),
      'logprobs still recorded',
    );
    assert.equal(llm.requests.filter((q) => q.body.return_token_ids).length, 1, 'only the first, refused request carried it');
  });

  it('passes on a 400 that is not about its injections, and keeps injecting', async () => {
    const { proxy, turns } = await setup({
      turns: [{ error: { status: 400, message: 'This model maximum context length is 32768 tokens' } }],
    });
    for (let i = 0; i < 2; i++) {
      const response = await post(proxy, chatBody());
      assert.equal(response.status, 400);
      assert.match(await response.text(), /maximum context length/);
    }
    assert.deepEqual(
      turns.map((t) => t.injected.includes('return_token_ids') && t.injected.includes('logprobs')),
      [true, true],
    );
  });

  it('counts a 200 whose stream is garbage as an upstream failure, and gives up after enough in a row', async () => {
    const broken = { text: 'x', malformed: true };
    const { proxy } = await setup({ turns: [broken, broken, broken] }, { maxConsecutiveFailures: 2 });
    await (await post(proxy, chatBody())).text();
    assert.equal(proxy.gaveUp, null, 'one broken answer is not an outage yet');
    await (await post(proxy, chatBody())).text();
    assert.match(proxy.gaveUp ?? '', /failed 2 times in a row \(last: HTTP 200, unparseable SSE data/);
    assert.deepEqual({ successes: proxy.stats.successes, failures: proxy.stats.failures }, { successes: 0, failures: 2 });
  });

  it('records a malformed stream and passes the bytes on', async () => {
    const { proxy, turns } = await setup({ turns: [{ text: 'x', malformed: true }] });
    const sse = await (await post(proxy, chatBody())).text();
    assert.match(sse, /unterminated/);
    assert.equal(turns[0]!.upstream_error?.type, 'malformed_stream');
  });

  it('passes client errors through and records them', async () => {
    const { proxy, turns } = await setup({ turns: [{ error: { status: 404, message: 'model not found' } }] });
    const response = await post(proxy, chatBody());
    assert.equal(response.status, 404);
    assert.match(await response.text(), /model not found/);
    assert.equal(turns[0]!.upstream_status, 404);
    assert.equal(turns[0]!.upstream_error?.type, 'http');
    assert.equal(proxy.gaveUp, null, 'a 4xx is not an outage');
  });

  it('relays GET /v1/models, without recording a turn', async () => {
    const { proxy, turns } = await setup({ turns: [{ text: 'x' }] });
    const models = (await (await fetch(`${proxy.address}/v1/models`)).json()) as any;
    assert.equal(models.data[0].id, 'scripted-model');
    assert.equal(turns.length, 0);
  });

  it('answers every other route itself: nothing but the model API reaches the upstream with the key', async () => {
    const { llm, proxy } = await setup({ turns: [{ text: 'x' }] }, { apiKey: 'sk-upstream-key-123' });
    const attempts: Array<[string, string, number]> = [
      ['GET', '/v1/../../admin/x', 404],
      ['GET', '/v1/%2e%2e/%2e%2e/admin/x', 404],
      ['DELETE', '/v1/files/x', 404],
      ['POST', '/v1/fine_tuning/jobs', 404],
      ['POST', '/v1/chat/completions/../../../admin', 404],
      ['GET', '/v1/chat/completions', 405],
      ['DELETE', '/v1/models', 405],
      ['POST', '//v1/chat/completions', 404],
    ];
    for (const [method, target, status] of attempts) {
      // Raw HTTP: fetch would normalise the `..` away before sending.
      const answer = await rawRequest(proxy.address!, method, target);
      assert.equal(answer.status, status, `${method} ${target} answered ${answer.status}`);
    }
    assert.equal(llm.requests.length, 0, `reached the upstream: ${llm.requests.map((q) => q.path).join(', ')}`);
    assert.equal(proxy.stats.refused, attempts.length);
  });

  it('bounds the bytes of requests held at once: past two at the limit, the next is told to retry (429)', async () => {
    const limit = 64 * 1024;
    const slow = { text: 'slow', delay_ms: 1500 };
    const { llm, proxy } = await setup({ turns: [slow, slow, slow] }, { maxRequestBytes: limit });
    const body = chatBody({ messages: [{ role: 'user', content: 'y'.repeat(limit - 2048) }] });
    const first = [post(proxy, body), post(proxy, body)];
    await waitFor(() => llm.requests.length === 2, 5000, 'two requests to reach the upstream');
    const third = await post(proxy, body);
    assert.equal(third.status, 429, 'a third large body while two are held');
    for (const response of await Promise.all(first)) assert.equal(response.status, 200);
    const later = await post(proxy, body);
    assert.equal(later.status, 200, 'the budget is given back when requests end');
    await later.text();
  });

  it('lets a client still sending an oversized body read its 413 (no reset under it)', async () => {
    const { llm, proxy } = await setup({ turns: [{ text: 'x' }] }, { maxRequestBytes: 64 * 1024 });
    const { hostname, port } = new URL(proxy.address!);
    const total = 384 * 1024; // over the limit, within the bounded drain (8 limits)
    const outcome = await new Promise<{ response: string; error: string | null }>((resolve) => {
      let response = '';
      // Like most HTTP clients (Python's among them): send the whole body, and only then read the answer.
      const sendAllThenRead = async () => {
        socket.pause();
        socket.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${total}\r\n\r\n`);
        for (let sent = 0; sent < total && !socket.destroyed; sent += 32 * 1024) {
          socket.write(Buffer.alloc(32 * 1024, 0x20));
          await new Promise((r) => setTimeout(r, 5));
        }
        socket.resume();
      };
      const socket = net.connect(Number(port), hostname, () => void sendAllThenRead());
      socket.on('data', (chunk: Buffer) => {
        response += chunk.toString('latin1');
        if (response.includes('\r\n\r\n') && response.includes('}}')) {
          socket.destroy();
          resolve({ response, error: null });
        }
      });
      socket.on('error', (error) => resolve({ response, error: error.message }));
      socket.on('close', () => resolve({ response, error: null }));
    });
    assert.match(
      outcome.response,
      /^HTTP\/1\.1 413/,
      `no 413 read (error: ${outcome.error}, got ${JSON.stringify(outcome.response.slice(0, 80))})`,
    );
    assert.equal(llm.requests.length, 0);
  });

  it('answers refused routes through the in-sandbox bridge without resetting the client (1000 in a row)', async () => {
    const { llm, proxy } = await setup({ turns: [{ text: 'x' }] });
    const dir = makeSystemTempDir('bridge-');
    cleanups.push(async () => removeDir(dir));
    const socketPath = path.join(dir, 'llm.sock');
    const channel = net.createServer((connection) => proxy.accept(connection));
    await new Promise<void>((resolve) => channel.listen(socketPath, resolve));
    cleanups.push(() => new Promise((resolve) => channel.close(() => resolve())));
    // Like the agent's own probes: the body follows the head from another thread, and the answer is read to the end.
    // Answering before the body came let the late bytes hit a closed socket, and the bridge dropped its client with
    // the answer unread: about 1 in 150 such requests came back with nothing.
    const probe = String.raw`
import socket, sys, threading
from collections import Counter
def raw(port):
    sock = socket.create_connection(('127.0.0.1', port), timeout=30)
    head = b'POST /v1/fine_tuning/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n'
    threading.Thread(target=lambda: (sock.sendall(head), sock.sendall(b'{}')), daemon=True).start()
    answer = b''
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except OSError:
        pass
    sock.close()
    return answer.split(b' ', 2)[1].decode() if answer.startswith(b'HTTP/') else 'nothing'
print(dict(Counter(raw(int(sys.argv[1])) for _ in range(1000))))
`;
    const bridge = path.resolve('resources/sandbox/llm-bridge.mjs');
    const child = spawn(process.execPath, [bridge, socketPath, 'PORT_HERE', '--', 'python3', '-c', probe, 'PORT_HERE'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let printed = '';
    child.stdout.on('data', (chunk: Buffer) => (printed += chunk.toString()));
    const code = await new Promise((resolve) => child.on('exit', resolve));
    assert.equal(code, 0);
    assert.equal(printed.trim(), "{'404': 1000}");
    assert.equal(llm.requests.length, 0);
  });

  it('refuses an oversized request with 413 before it reaches the upstream, and records the refusal', async () => {
    const { llm, proxy, turns } = await setup({ turns: [{ text: 'small is fine' }] }, { maxRequestBytes: 64 * 1024 });
    const big = chatBody({ messages: [{ role: 'user', content: 'x'.repeat(200 * 1024) }] });
    const refused = await post(proxy, big);
    assert.equal(refused.status, 413);
    assert.match(await refused.text(), /limit/);
    assert.equal(llm.requests.length, 0, 'the oversized request reached the upstream');
    assert.equal(turns[0]?.upstream_error?.type, 'refused', 'the refusal is recorded as a turn');
    assert.equal(turns[0]?.request, null, 'the refused body is not kept');
    const ok = await post(proxy, chatBody());
    assert.match(await ok.text(), /small/, 'the next request of normal size is served');
    assert.equal(turns.length, 2);
    assert.equal(proxy.turns.length, 2, 'the proxy keeps a summary of each turn');
    assert.equal('request' in proxy.turns[1]!, false, 'summaries do not hold the request body');
  });

  it('after repeated upstream failures, ends the agent’s run with a final answer instead of more retries', async () => {
    const { llm, proxy, turns } = await setup({ turns: [{ text: 'x' }], error: { status: 503 } }, { maxConsecutiveFailures: 2 });
    assert.equal((await post(proxy, chatBody())).status, 503);
    const second = await post(proxy, chatBody());
    assert.equal(second.status, 200);
    assert.match(await second.text(), /failed 2 times in a row.*Stopping this run/);
    assert.match(proxy.gaveUp ?? '', /failed 2 times in a row \(last: HTTP 503\)/);
    const upstreamCalls = llm.requests.length;
    await (await post(proxy, chatBody())).text();
    assert.equal(llm.requests.length, upstreamCalls, 'the upstream is not contacted any more');
    assert.equal(turns.length, 2, 'synthetic answers are not recorded as turns');
  });

  it('stops the upstream request when the client goes away mid-stream', async () => {
    const { proxy, turns } = await setup({ turns: [{ text: 'a b c d e f g h i j k l m n o p', chunk_delay_ms: 200 }] });
    const controller = new AbortController();
    const response = await post(proxy, chatBody());
    const reader = response.body!.getReader();
    await reader.read();
    controller.abort();
    await reader.cancel();
    await waitFor(() => turns.length === 1, 5000, 'the turn to be recorded');
    assert.equal(turns[0]!.upstream_error?.type, 'stream');
  });

  it('survives an upstream stream of odd shapes and deep nesting: relayed, recorded as far as it goes, and serving on', async () => {
    const chunk = (choice: unknown) => ({ id: 'chatcmpl-odd', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [choice] });
    const depth = 100_000;
    const odd = [
      JSON.stringify(chunk({ index: 0, delta: { content: 'a' }, logprobs: { content: [null] } })),
      JSON.stringify(chunk({ index: 0, delta: { content: 'b' }, logprobs: { content: 3 } })),
      JSON.stringify(
        chunk({ index: 0, delta: { content: 'c' }, logprobs: { content: [{ token: 'c', logprob: -1, top_logprobs: [null, 7] }] } }),
      ),
      JSON.stringify(chunk({ index: 0, delta: { content: 'd', tool_calls: [null, 5] }, logprobs: { content: 'xy' } })),
      JSON.stringify(chunk({ index: 0, delta: { content: 'e' }, token_ids: [1, 2], logprobs: { content: [{ token: 5 }] } })),
      // Deeper than JSON.stringify can go (JSON.parse takes it): once crashed the server the proxy runs in.
      `{"choices":[{"index":0,"delta":{"content":"f"},"logprobs":{"content":[]},"x":${'['.repeat(depth)}${']'.repeat(depth)}}]}`,
    ];
    const upstream = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(`${odd.map((data) => `data: ${data}\n\n`).join('')}data: [DONE]\n\n`);
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => upstream.close(() => resolve())));
    const { proxy, turns } = await recordingProxyFor(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`);
    for (let round = 0; round < 2; round++) {
      const sse = await (await post(proxy, chatBody())).text();
      assert.ok(sse.endsWith('data: [DONE]\n\n'), 'the whole stream reached the client');
      assert.equal(sse.split('\n\n').filter(Boolean).length, odd.length + 1, 'every event reached the client');
    }
    assert.equal(turns.length, 2, 'both turns recorded: the proxy kept serving');
    assert.equal(turns[0]!.response.content, 'abcdef');
    assert.deepEqual(turns[0]!.completion_tokens, ['', 'c', ''], 'odd entries read as empty tokens, as far as they go');
    assert.deepEqual(turns[0]!.top_logprobs, [
      [
        { token: '', logprob: null },
        { token: '', logprob: null },
      ],
    ]);
    assert.deepEqual(turns[0]!.completion_token_ids, [1, 2]);
  });

  it('relays first: awkwardly cut stream bytes reach the client as sent (or stripped as before), and the turn is recorded the same', async () => {
    // vLLM-like events: the prompt's ids, logprobs with alternatives, token ids, a tool call, text with a quote, a
    // brace and multi-byte characters, usage; then cut across events, inside `data:` and inside a character.
    const logprobs = (token: string, logprob: number) => ({
      content: [{ token, logprob, bytes: [...Buffer.from(token)], top_logprobs: [{ token, logprob, bytes: [...Buffer.from(token)] }] }],
    });
    const chunk = (choice: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
      id: 'chatcmpl-cut',
      object: 'chat.completion.chunk',
      created: 1,
      model: 'scripted-model',
      choices: [{ index: 0, logprobs: null, finish_reason: null, ...choice }],
      ...extra,
    });
    const pieces = ['Héllo', ' "wörld"', ' }]', ' 🙂'];
    const events = [
      chunk({ delta: { role: 'assistant', content: '' } }, { prompt_token_ids: [11, 12, 13] }),
      ...pieces.map((text, i) => chunk({ delta: { content: text }, logprobs: logprobs(text, -0.5 * i), token_ids: [100 + i] })),
      chunk({
        delta: { tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'write', arguments: '' } }] },
        logprobs: logprobs('write', -0.25),
        token_ids: [200],
      }),
      chunk({
        delta: { tool_calls: [{ index: 0, function: { arguments: '{"a":"}"}' } }] },
        logprobs: logprobs('{"', -1),
        token_ids: [201],
      }),
      chunk({ delta: {}, finish_reason: 'tool_calls' }),
      { id: 'chatcmpl-cut', object: 'chat.completion.chunk', created: 1, model: 'scripted-model', choices: [], usage: { total_tokens: 9 } },
    ];
    const body = Buffer.from(`${events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join('')}data: [DONE]\n\n`);
    const accented = body.indexOf('é');
    const second = body.indexOf('data: ', 10);
    const cuts = [second + 3, accented + 1, body.indexOf('🙂') + 2, body.indexOf('data: [DONE]') + 9];
    const writes = [0, ...cuts].map((start, i) => body.subarray(start, i < cuts.length ? cuts[i] : body.length));
    assert.ok(
      writes.some((w) => w.toString('latin1').split('\n\n').length > 3),
      'one write holds several events',
    );

    const upstream = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.socket!.setNoDelay(true);
        // Apart in time, so they reach the proxy as separate reads.
        void (async () => {
          for (const write of writes) {
            res.write(write);
            await sleep(20);
          }
          res.end();
        })();
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => upstream.close(() => resolve())));
    const turns: ProxyTurn[] = [];
    const proxy = await startRecordingProxy({
      upstreamBaseUrl: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`,
      record: true,
      topLogprobs: 1,
      requestTokenIds: true,
      disableThinking: false,
      maxTokensCap: null,
      maxConsecutiveFailures: 3,
      listen: { port: 0 },
      onTurn: (turn) => turns.push(turn),
    });
    cleanups.push(() => proxy.close());

    // What the old path recorded: every event's data parsed and assembled, from the whole body at once.
    const assembler = new TurnAssembler();
    for (const event of new SseSplitter().push(body)) {
      const data = eventData(event);
      if (data !== null && data !== '[DONE]') assembler.addChunk(JSON.parse(data));
    }
    const expectedTurn = assembler.finish();
    /** The parts of a turn that come from the answer: the ones the assembler gives. */
    const recordedPart = (turn: ProxyTurn) =>
      Object.fromEntries(Object.keys(expectedTurn).map((key) => [key, turn[key as keyof typeof expectedTurn]]));

    // Asked for everything itself: nothing is injected, and the client gets the upstream's bytes exactly.
    const asked = await post(proxy, chatBody({ logprobs: true, top_logprobs: 1, return_token_ids: true }));
    const askedBytes = Buffer.from(await asked.arrayBuffer());
    assert.ok(askedBytes.equals(body), `the client got the upstream's bytes:\n${askedBytes.toString()}`);
    await waitFor(() => turns.length === 1, 5000, 'the first turn to be recorded');
    assert.deepEqual(turns[0]!.injected, []);
    assert.deepEqual(recordedPart(turns[0]!), expectedTurn);
    assert.equal(turns[0]!.response.content, pieces.join(''));
    assert.deepEqual(turns[0]!.completion_token_ids, [100, 101, 102, 103, 200, 201]);

    // Injected: each event loses exactly what the old path removed (parse, strip, re-serialise), nothing else.
    const stripped = Buffer.from(
      `${events.map((e) => `data: ${JSON.stringify(stripInjected(structuredClone(e), ['return_token_ids', 'logprobs']))}\n\n`).join('')}data: [DONE]\n\n`,
    );
    const plain = await post(proxy, chatBody());
    const plainBytes = Buffer.from(await plain.arrayBuffer());
    assert.ok(plainBytes.equals(stripped), `the client got the stripped events:\n${plainBytes.toString()}`);
    await waitFor(() => turns.length === 2, 5000, 'the second turn to be recorded');
    assert.deepEqual(turns[1]!.injected, ['return_token_ids', 'logprobs']);
    assert.deepEqual(recordedPart(turns[1]!), expectedTurn);
  });
});

describe('opencode-env proxy (standalone)', () => {
  it('serves on its own and appends every turn to a JSONL file', async () => {
    const llm = await startScripted({ turns: [{ text: 'standalone works' }] });
    const dir = makeSystemTempDir('proxy-cli');
    const turnsFile = path.join(dir, 'turns.jsonl');
    const child = spawn(process.execPath, [cliPath, 'proxy', '--upstream', llm.url, '--turns', turnsFile, '--disable-thinking'], {
      env: { PATH: process.env.PATH, OPENCODE_ENV_UPSTREAM_API_KEY: 'sk-from-env-0001' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let url = '';
      child.stdout.on('data', (chunk: Buffer) => (url += chunk.toString()));
      await waitFor(() => url.includes('\n'), 10_000, 'the proxy to print its URL');
      const response = await fetch(`${url.trim()}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(chatBody()),
      });
      assert.match(await response.text(), /standalone/);
      await waitFor(() => existsSync(turnsFile) && readFileSync(turnsFile, 'utf8').trim().length > 0, 5000, 'the turn to be written');
      const turn = JSON.parse(readFileSync(turnsFile, 'utf8').trim().split('\n')[0]!);
      assert.equal(turn.response.content, 'standalone works');
      assert.deepEqual(turn.request.chat_template_kwargs, { enable_thinking: false });
      assert.equal(llm.requests[0]!.headers.authorization, '[present]');
      assert.ok(!readFileSync(turnsFile, 'utf8').includes('sk-from-env-0001'));
    } finally {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
      await llm.close();
      removeDir(dir);
    }
  });
});
