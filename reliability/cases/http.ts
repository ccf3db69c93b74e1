import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { exampleScript, exampleTask } from '../../test/helpers/scripted.js';
import type { Case, CaseContext } from '../harness.js';
import type { HttpServer, WsClient } from '../http-server.js';
import { markedProcesses } from '../leftovers.js';

/**
 * HTTP mode (`opencode-env http`, issue 9): malformed bodies and frames, slow clients, sessions abandoned by the
 * hundred, the token on every route, other clients' session ids, and a load of /ws steps and rollouts at once.
 */

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Deeply nested JSON: a parser or serializer that recurses overflows its stack on it. */
const deepArray = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
const deepObject = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;

async function rpc(server: HttpServer, method: string, params: Record<string, unknown> = {}, id: number | string = 1) {
  const answer = await server.request('POST', '/mcp', { body: { jsonrpc: '2.0', method, params, id } });
  return answer.json as { result?: any; error?: { code: number; message: string } };
}

const MCP_HEADERS = { accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' };

/** Starts an MCP Streamable HTTP session (initialize, then initialized); returns its Mcp-Session-Id. */
async function mcpInitialize(server: HttpServer): Promise<string | null> {
  const answer = await server.request('POST', '/mcp', {
    headers: MCP_HEADERS,
    body: {
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'reliability', version: '0' } },
    },
  });
  const id = answer.headers.get('mcp-session-id');
  if (id) {
    await server.request('POST', '/mcp', {
      headers: { ...MCP_HEADERS, 'mcp-session-id': id },
      body: { jsonrpc: '2.0', method: 'notifications/initialized' },
    });
  }
  return id;
}

/** execute_python over an MCP Streamable HTTP session; whether it ran without error. */
async function mcpPython(server: HttpServer, sessionId: string, code: string): Promise<boolean> {
  const answer = await server.request('POST', '/mcp', {
    headers: { ...MCP_HEADERS, 'mcp-session-id': sessionId },
    body: { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'execute_python', arguments: { code } } },
  });
  // JSON or one SSE event carrying the JSON-RPC response.
  const json = answer.json ?? JSON.parse(/^data: (.*)$/m.exec(answer.text)?.[1] ?? 'null');
  return answer.status === 200 && json?.result?.structuredContent?.exit_code === 0 && json.result.isError !== true;
}

/** Waits until `check` holds, polling; false if it did not within `timeoutMs`. */
async function eventually(check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 250): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(everyMs);
  }
}

/** Sandbox directories under the workspace's root right now. */
function sandboxDirCount(server: HttpServer): number {
  return server.workspace.sandboxDirs().length;
}

/** Opens `count` /ws sockets (at most `parallel` handshakes at once). */
async function openSockets(server: HttpServer, count: number, parallel = 50): Promise<WsClient[]> {
  const sockets: WsClient[] = [];
  for (let i = 0; i < count; i += parallel) {
    sockets.push(...(await Promise.all(Array.from({ length: Math.min(parallel, count - i) }, () => server.socket()))));
  }
  return sockets;
}

/** Every POST route: OpenEnv's from /openapi.json (plus /mcp). */
async function postRoutes(server: HttpServer): Promise<string[]> {
  const openapi = (await server.request('GET', '/openapi.json')).json as { paths: Record<string, Record<string, unknown>> };
  return Object.entries(openapi.paths)
    .filter(([, methods]) => 'post' in methods)
    .map(([route]) => route);
}

/** Bodies /reset may accept: objects (its unknown keys are ignored) and the empty body, which is `{}`. */
const RESET_TAKES = new Set(['empty', 'invalid UTF-8', 'deep object', 'deep action', 'deep params']);

const malformed: Case = {
  id: '18a',
  title: 'HTTP: malformed bodies and frames',
  sent: 'POST /reset /step /mcp (JSON-RPC and Streamable HTTP): broken, non-object, invalid UTF-8, 200k-deep and over-limit JSON; /ws: the same as text and binary frames, an invalid-UTF-8 frame, a 2 MB frame',
  async run(t) {
    const options = { env: { OPENCODE_ENV_HTTP_MAX_BODY_MB: '1', MAX_CONCURRENT_ENVS: '4' } };
    let server = await t.httpServer(options);
    // A crash is recorded, and a new server on the same directories takes the rest of the inputs: every crasher is listed.
    const crashes: string[] = [];
    const restartIfDown = async (after: string): Promise<boolean> => {
      const health = await server.request('GET', '/health', { timeoutMs: 10_000 }).catch(() => null);
      if (health?.status === 200 && !/"msg":"shutting down"/.test(server.stderr())) return false;
      t.expect(false, `the server crashed on ${after}: ${lastError(server)}`);
      crashes.push(after);
      t.ended(server);
      server = await t.httpServer({ ...options, workspace: server.workspace });
      return true;
    };
    const bodies: Array<[string, string | Buffer]> = [
      ['broken', '{broken'],
      ['empty', ''],
      ['null', 'null'],
      ['array', '[]'],
      ['string', '"text"'],
      ['invalid UTF-8', Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])],
      ['deep array', deepArray(200_000)],
      ['deep object', deepObject(100_000)],
      ['deep action', `{"action":${deepObject(100_000)}}`],
      ['deep params', `{"jsonrpc":"2.0","method":"tools/call","id":1,"params":${deepObject(100_000)}}`],
      ['over the limit', `{"action":{"code":"${'x'.repeat(1_200_000)}"}}`],
    ];
    const routes = await postRoutes(server);
    t.expect(
      routes.includes('/reset') && routes.includes('/step') && routes.includes('/mcp'),
      `POST routes in /openapi.json: ${routes.join(' ')}`,
    );
    // /mcp twice: as OpenEnv's plain JSON-RPC, and as MCP Streamable HTTP (told apart by the Accept header).
    const targets = [
      ...routes.map((route) => ({ route, label: route, headers: {} })),
      { route: '/mcp', label: '/mcp (Streamable HTTP)', headers: MCP_HEADERS },
    ];
    // Per route, the statuses it answered (0: no answer).
    const statuses = new Map<string, Set<number>>();
    for (const { route, label, headers } of targets) {
      for (const [name, body] of bodies) {
        let status = 0;
        try {
          const answer = await server.request('POST', route, { body, headers, timeoutMs: 30_000 });
          status = answer.status;
          // /mcp speaks OpenEnv JSON-RPC: HTTP 200 carrying a JSON-RPC error is its 4xx.
          const rpcError = route === '/mcp' && status === 200 && typeof answer.json?.error?.code === 'number';
          t.expect(
            // /reset takes any object (unknown kwargs are ignored, as OpenEnv does): empty is {}, the bad bytes decode to a key.
            (status >= 400 && status < 500) || rpcError || (route === '/reset' && status === 200 && RESET_TAKES.has(name)),
            `POST ${label} ${name}: ${status} ${answer.text.slice(0, 120)}`,
          );
          if (name === 'over the limit') t.expect(status === 413, `POST ${label} over the 1 MB limit: ${status}, not 413`);
        } catch (error) {
          t.expect(false, `POST ${label} ${name}: no answer (${(error as Error).message})`);
        }
        statuses.set(label, (statuses.get(label) ?? new Set()).add(status));
        await restartIfDown(`POST ${label} ${name}`);
      }
    }

    // /ws: one connection takes every malformed frame and keeps its episode.
    let socket = await server.socket();
    const keep = async () => {
      const kept = await socket.request({ type: 'step', data: { code: 'kept = 1' } });
      t.expect(kept.type === 'observation', `first step: ${JSON.stringify(kept).slice(0, 200)}`);
    };
    await keep();
    const frames: Array<[string, string | Buffer, boolean]> = [
      ['broken', '{not json', false],
      ['empty', '', false],
      ['null', 'null', false],
      ['array', '[]', false],
      ['number', '42', false],
      ['binary garbage', randomBytes(512), true],
      ['binary JSON', Buffer.from(JSON.stringify({ type: 'state' })), true],
      ['deep array', deepArray(200_000), false],
      ['deep data', `{"type":"step","data":${deepObject(100_000)}}`, false],
      ['deep mcp', `{"type":"mcp","data":${deepObject(100_000)}}`, false],
      ['unknown type', JSON.stringify({ type: 'dance', data: {} }), false],
    ];
    const codes: string[] = [];
    for (const [index, [name, frame, binary]] of frames.entries()) {
      try {
        const reply = await socket.request(frame, { binary, timeoutMs: 30_000 });
        // An error frame, or for an `mcp` frame a JSON-RPC error inside its reply (its own protocol's words).
        const ok =
          reply.type === 'error' ||
          (name === 'binary JSON' && reply.type === 'state') ||
          (reply.type === 'mcp' && typeof reply.data?.error?.code === 'number');
        t.expect(ok, `/ws ${name} frame: ${JSON.stringify(reply).slice(0, 200)}`);
        codes.push(reply.type === 'error' ? String(reply.data?.code) : reply.type);
        // SESSION_ERROR is the server's own failure, and it ends the session: the client's mistake cost it its episode.
        if (reply.data?.code === 'SESSION_ERROR')
          throw new Error(`SESSION_ERROR (${String(reply.data.message).slice(0, 80)}) ended the session`);
      } catch (error) {
        t.expect(false, `/ws ${name} frame: ${(error as Error).message}`);
        if (codes.length === index) codes.push('none');
        // The connection is gone (and perhaps the server): go on with the next frames on a new one.
        socket.terminate();
        await restartIfDown(`/ws ${name} frame`);
        socket = await server.socket();
        await keep();
      }
    }
    if (socket.isOpen) {
      const after = await socket.request({ type: 'step', data: { code: 'print(kept)' } });
      t.expect(after.data?.observation?.stdout === '1\n', `the episode after the malformed frames: ${JSON.stringify(after).slice(0, 200)}`);
    } else t.expect(false, `the /ws connection was closed by a malformed frame (${JSON.stringify(await socket.closed)})`);
    await socket.close();

    // Frames the WebSocket layer itself refuses end that connection only; its session is freed.
    const closes: string[] = [];
    for (const [name, send] of [
      ['invalid UTF-8 text', (s: WsClient) => s.ws.send(Buffer.from([0xc3, 0x28, 0xff]), { binary: false })],
      ['2 MB frame', (s: WsClient) => s.ws.send(`{"type":"step","data":{"code":"${'x'.repeat(2_000_000)}"}}`)],
    ] as const) {
      const victim = await server.socket();
      send(victim);
      const closed = await Promise.race([victim.closed, sleep(15_000).then(() => null)]);
      t.expect(closed !== null, `/ws ${name}: the connection was not closed`);
      closes.push(`${name} → close ${closed?.code}`);
      victim.terminate();
    }
    // WebSocket /mcp (raw JSON-RPC frames).
    const raw = await server.socket('/mcp');
    const parseError = await raw.request('{oops');
    t.expect(parseError.error?.code === -32700, `WebSocket /mcp broken frame: ${JSON.stringify(parseError)}`);
    const deepRpc = await raw.request(deepArray(200_000)).catch((error: Error) => ({ failed: error.message }));
    t.expect(typeof deepRpc.error?.code === 'number', `WebSocket /mcp deep frame: ${JSON.stringify(deepRpc).slice(0, 200)}`);
    const deepParams = await raw
      .request(`{"jsonrpc":"2.0","method":"tools/call","id":1,"params":${deepObject(100_000)}}`)
      .catch((error: Error) => ({ failed: error.message }));
    t.expect(typeof deepParams.error?.code === 'number', `WebSocket /mcp deep params: ${JSON.stringify(deepParams).slice(0, 200)}`);
    raw.terminate();
    await restartIfDown('WebSocket /mcp deep frames');
    // Every slot is free again: the cap (4) opens in full.
    const full = await openSockets(server, 4);
    const states = await Promise.all(full.map((s) => s.request({ type: 'state' })));
    t.expect(
      states.every((s) => s.type === 'state'),
      `a full cap after the refused frames: ${states.map((s) => s.data?.code ?? s.type).join(' ')}`,
    );
    await Promise.all(full.map((s) => s.close()));
    const crashed = crashes.length ? `CRASHED on ${crashes.join(', ')}; ` : 'no crash; ';
    return (
      crashed +
      `${bodies.length} bodies per route: ${[...statuses].map(([route, set]) => `${route} → ${[...set].sort().join('/')}`).join(', ')} (0: no answer); ` +
      `/ws frames → ${codes.join(' ')}, episode kept; ${closes.join(', ')}; cap of 4 free afterwards`
    );
  },
};

/** The server's last error log line (the cause of a crash), shortened. */
function lastError(server: HttpServer): string {
  const line =
    server
      .stderr()
      .split('\n')
      .findLast((l) => /"level":(50|60)/.test(l)) ?? '';
  return line.replace(/"stack":"[^"]*"/, '').slice(0, 300);
}

/**
 * Writes `head` at once, then `text` one byte every `everyMs` until the server ends the connection or `maxMs` passes:
 * when it ended (or null), and what it said.
 */
function trickle(
  url: string,
  head: string,
  text: string,
  everyMs: number,
  maxMs: number,
): Promise<{ endedAfterS: number | null; reply: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = net.connect(Number(port), hostname);
    let reply = '';
    let sent = 0;
    let ended = false;
    const finish = (endedAfterS: number | null) => {
      if (ended) return;
      ended = true;
      clearInterval(timer);
      socket.destroy();
      resolve({ endedAfterS, reply });
    };
    socket.on('data', (chunk) => (reply += chunk.toString('latin1')));
    socket.on('close', () => finish((performance.now() - started) / 1000));
    socket.on('error', () => undefined);
    socket.write(head);
    const timer = setInterval(() => {
      if (performance.now() - started > maxMs) return finish(null);
      if (sent < text.length && socket.writable) socket.write(text[sent++]!);
    }, everyMs);
  });
}

const slowClients: Case = {
  id: '18b',
  title: 'HTTP: slow clients',
  sent: '20 clients trickling headers 1 byte/s past headersTimeout (slowloris), 1 trickling a /step body over ~45 s; /health and a /ws step every second meanwhile',
  async run(t) {
    const server = await t.httpServer();
    const headerStart = 'GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ';
    const slowHeaders = Array.from({ length: 20 }, () => trickle(server.url, '', headerStart + 'a'.repeat(200), 1000, 90_000));
    // The headers at once, then the body byte by byte over 45 s: longer than headersTimeout, within no other limit.
    const body = JSON.stringify({ action: { code: 'print(7)' } });
    const bodyEveryMs = 1500;
    const bodyHead = `POST /step HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
    const slowBody = trickle(server.url, bodyHead, body, bodyEveryMs, 120_000);
    // Others are served meanwhile: a /health and a /ws step each second.
    let stop = false;
    const latencies: number[] = [];
    const failures: string[] = [];
    const socket = await server.socket();
    const others = (async () => {
      for (let i = 0; !stop; i++) {
        const started = performance.now();
        try {
          const [health, step] = await Promise.all([
            server.request('GET', '/health', { timeoutMs: 10_000 }),
            socket.request({ type: 'step', data: { code: `print(${i})` } }, { timeoutMs: 10_000 }),
          ]);
          if (health.status !== 200 || step.data?.observation?.stdout !== `${i}\n`)
            failures.push(`round ${i}: ${health.status} ${JSON.stringify(step).slice(0, 100)}`);
        } catch (error) {
          failures.push(`round ${i}: ${(error as Error).message}`);
        }
        latencies.push(performance.now() - started);
        await sleep(1000);
      }
    })();
    const headerResults = await Promise.all(slowHeaders);
    const bodyResult = await slowBody;
    stop = true;
    await others;
    await socket.close();
    const cutAt = headerResults.map((r) => r.endedAfterS).filter((s): s is number => s !== null);
    t.expect(cutAt.length === headerResults.length, `${headerResults.length - cutAt.length} header tricklers were never cut off (90 s)`);
    // headersTimeout is 30 s; node checks it every 30 s (connectionsCheckingInterval), so the cut comes within 30–60 s.
    t.expect(
      cutAt.every((s) => s >= 25 && s < 65),
      `header tricklers cut after ${cutAt.map((s) => s.toFixed(0)).join(' ')} s`,
    );
    const status408 = headerResults.filter((r) => r.reply.startsWith('HTTP/1.1 408')).length;
    const bodyStatus = /^HTTP\/1\.1 (\d{3})/.exec(bodyResult.reply)?.[1] ?? 'none';
    const served = bodyStatus === '200' && bodyResult.reply.includes('"stdout":"7\\n"');
    t.expect(served || bodyStatus === '408' || bodyResult.endedAfterS !== null, `slow body: ${bodyResult.reply.slice(0, 200)}`);
    t.expect(failures.length === 0, `others were not served meanwhile: ${failures.slice(0, 3).join('; ')}`);
    const worst = Math.max(...latencies);
    t.expect(worst < 5000, `others waited up to ${worst.toFixed(0)} ms`);
    const sorted = [...latencies].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] ?? NaN;
    return (
      `20 header tricklers cut after ${Math.min(...cutAt).toFixed(0)}–${Math.max(...cutAt).toFixed(0)} s (${status408} got 408); ` +
      `slow body (${body.length} bytes over ${((body.length * bodyEveryMs) / 1000).toFixed(0)} s): ${served ? 'served, 200' : `status ${bodyStatus}`} after ${bodyResult.endedAfterS?.toFixed(0)} s; ` +
      `meanwhile ${latencies.length} rounds of /health + /ws step, median ${median.toFixed(0)} ms, worst ${worst.toFixed(0)} ms, ${failures.length} failed`
    );
  },
};

/** Opens `count` /ws sessions, runs a step on every `stepEvery`-th, and returns them. */
async function openWithSteps(server: HttpServer, count: number, stepEvery: number): Promise<{ sockets: WsClient[]; failures: number }> {
  const sockets = await openSockets(server, count);
  let failures = 0;
  await Promise.all(
    sockets.map(async (socket, i) => {
      const frame =
        i % stepEvery === 0 ? await socket.request({ type: 'step', data: { code: `v = ${i}` } }) : await socket.request({ type: 'state' });
      if (frame.type === 'error') failures += 1;
    }),
  );
  return { sockets, failures };
}

const abandoned: Case = {
  id: '18c',
  title: 'HTTP: 500 sessions abandoned',
  sent: 'MAX_CONCURRENT_ENVS=200, idle 3 s: 150 /ws dropped without a close frame, 150 /ws left open and silent, 150 JSON-RPC and 50 MCP Streamable HTTP sessions never closed; 1 in 5 ran Python',
  async run(t) {
    const cap = 200;
    const server = await t.httpServer({ env: { MAX_CONCURRENT_ENVS: String(cap), OPENCODE_ENV_SESSION_IDLE_S: '3' } });
    await server.pythonOnce('print(1)');
    const rssBefore = server.rssMiB();
    const timings: string[] = [];
    let stepFailures = 0;
    const sandboxesGone = async (what: string) => {
      const gone = await eventually(
        async () => sandboxDirCount(server) === 0 && (await markedProcesses(server.workspace.sandboxIds)).length === 0,
        30_000,
      );
      t.expect(
        gone,
        `after ${what}: ${sandboxDirCount(server)} sandbox directories, ${(await markedProcesses(server.workspace.sandboxIds)).length} sandbox processes`,
      );
    };

    // Wave A: dropped without a close frame (a crashed client): the server sees the TCP end.
    let started = performance.now();
    const dropped = await openWithSteps(server, 150, 5);
    stepFailures += dropped.failures;
    for (const socket of dropped.sockets) socket.terminate();
    await sandboxesGone('150 dropped connections');
    timings.push(`A ${((performance.now() - started) / 1000).toFixed(0)} s`);

    // Wave B: open and silent (a client that hangs): only the idle reaper ends them, and closes their sockets.
    started = performance.now();
    const silent = await openWithSteps(server, 150, 5);
    stepFailures += silent.failures;
    const allClosed = await Promise.race([
      Promise.all(silent.sockets.map((s) => s.closed)).then(() => true),
      sleep(30_000).then(() => false),
    ]);
    t.expect(allClosed, `silent connections still open 30 s after the idle limit: ${silent.sockets.filter((s) => s.isOpen).length}`);
    for (const socket of silent.sockets) socket.terminate();
    await sandboxesGone('150 silent connections');
    timings.push(`B ${((performance.now() - started) / 1000).toFixed(0)} s`);

    // Wave C: OpenEnv JSON-RPC sessions created and never closed.
    started = performance.now();
    const ids: string[] = [];
    for (let i = 0; i < 150; i += 50) {
      const created = await Promise.all(Array.from({ length: 50 }, (_, k) => rpc(server, 'openenv/session/create', {}, i + k)));
      for (const answer of created) {
        if (typeof answer.result?.session_id === 'string') ids.push(answer.result.session_id);
        else stepFailures += 1;
      }
    }
    const calls = await Promise.all(
      ids
        .filter((_, i) => i % 5 === 0)
        .map((id) => rpc(server, 'tools/call', { name: 'execute_python', arguments: { code: 'w = 1' }, session_id: id })),
    );
    stepFailures += calls.filter((c) => c.result?.is_error !== false).length;
    await sandboxesGone('150 JSON-RPC sessions');
    const afterReap = await rpc(server, 'tools/call', { name: 'execute_python', arguments: { code: 'print(w)' }, session_id: ids[0] });
    t.expect(
      /Unknown session_id/.test(afterReap.error?.message ?? ''),
      `a reaped JSON-RPC session still answers: ${JSON.stringify(afterReap).slice(0, 200)}`,
    );
    timings.push(`C ${((performance.now() - started) / 1000).toFixed(0)} s`);

    // Wave D: MCP Streamable HTTP sessions initialized and never ended (no DELETE).
    started = performance.now();
    const mcpIds = (await Promise.all(Array.from({ length: 50 }, () => mcpInitialize(server)))).filter((id): id is string => id !== null);
    stepFailures += 50 - mcpIds.length;
    const mcpCalls = await Promise.all(mcpIds.filter((_, i) => i % 5 === 0).map((id) => mcpPython(server, id, 'u = 1')));
    stepFailures += mcpCalls.filter((ok) => !ok).length;
    await sandboxesGone('50 MCP sessions');
    const mcpAfter = await server.request('POST', '/mcp', {
      headers: { ...MCP_HEADERS, 'mcp-session-id': mcpIds[0] ?? 'none' },
      body: { jsonrpc: '2.0', id: 9, method: 'tools/list', params: {} },
    });
    t.expect(mcpAfter.status === 404, `a reaped MCP session still answers: ${mcpAfter.status} ${mcpAfter.text.slice(0, 120)}`);
    timings.push(`D ${((performance.now() - started) / 1000).toFixed(0)} s`);
    t.expect(stepFailures === 0, `${stepFailures} steps or creates failed while opening the sessions`);

    // The registry is back to 0: a full cap opens again.
    const full = await openSockets(server, cap);
    const states = await Promise.all(full.map((s) => s.request({ type: 'state' })));
    const refused = states.filter((s) => s.type !== 'state').length;
    t.expect(
      refused === 0,
      `${refused} of a full cap (${cap}) refused after the reaping: ${JSON.stringify(states.find((s) => s.type !== 'state'))}`,
    );
    await Promise.all(full.map((s) => s.close()));
    const rssAfter = server.rssMiB();
    const peak = server.peakRssMiB();
    // Sessions are small (an episode's state, a socket); what 500 of them leave behind must be garbage, not a leak.
    t.expect(rssAfter < rssBefore + 200, `RSS ${rssBefore.toFixed(0)} → ${rssAfter.toFixed(0)} MiB after 500 abandoned sessions`);
    t.expect(peak < 1024, `peak RSS ${peak.toFixed(0)} MiB`);
    return (
      `all 500 reaped (waves ${timings.join(', ')}); ${server.workspace.sandboxIds.size} sandboxes, none left; full cap of ${cap} open again; ` +
      `RSS ${rssBefore.toFixed(0)} → ${rssAfter.toFixed(0)} MiB, peak ${peak.toFixed(0)} MiB`
    );
  },
};

const tokens: Case = {
  id: '18d',
  title: 'HTTP: the token on every route',
  sent: 'OPENCODE_ENV_TOKEN set; every route of /openapi.json plus /, /web/, /web/api/traces, /mcp (POST GET DELETE): no, wrong, prefixed, extended, Basic, ?token= tokens; /ws, /mcp, /web/socket handshakes',
  async run(t) {
    const token = `rel-${randomBytes(12).toString('hex')}`;
    const server = await t.httpServer({ env: { OPENCODE_ENV_TOKEN: token } });
    const openapi = (await server.request('GET', '/openapi.json')).json as { paths: Record<string, Record<string, unknown>> };
    const routes: Array<[string, string]> = Object.entries(openapi.paths).flatMap(([route, methods]) =>
      Object.keys(methods).map((m) => [m.toUpperCase(), route] as [string, string]),
    );
    routes.push(
      ['GET', '/'],
      ['GET', '/web/'],
      ['GET', '/web/api/traces'],
      ['GET', '/web/api/traces/none.jsonl'],
      ['GET', '/mcp'],
      ['DELETE', '/mcp'],
    );
    const wrongs: Array<[string, Record<string, string>, string]> = [
      ['none', {}, ''],
      ['wrong', { authorization: 'Bearer wrong' }, ''],
      ['prefix', { authorization: `Bearer ${token.slice(0, -1)}` }, ''],
      ['extended', { authorization: `Bearer ${token}x` }, ''],
      ['Basic', { authorization: `Basic ${Buffer.from(`user:${token}`).toString('base64')}` }, ''],
      ['token as header value', { authorization: token }, ''],
      ['wrong ?token=', {}, '?token=wrong'],
    ];
    let checked = 0;
    const refusedWith = new Set<number>();
    for (const [method, route] of routes) {
      const body = method === 'POST' ? (route === '/mcp' ? { jsonrpc: '2.0', method: 'tools/list', id: 1 } : {}) : undefined;
      for (const [name, headers, query] of wrongs) {
        const answer = await server.request(method, `${route}${query}`, { body, headers, auth: false });
        checked += 1;
        refusedWith.add(answer.status);
        t.expect(
          answer.status === 401 || (route === '/health' && answer.status === 200),
          `${method} ${route} with ${name} token: ${answer.status}`,
        );
      }
      const ok = await server.request(method, route, { body });
      t.expect(ok.status !== 401 && ok.status < 500, `${method} ${route} with the token: ${ok.status} ${ok.text.slice(0, 100)}`);
    }
    // A query token is for browsers' pages and sockets only: REST refuses it.
    const queryOnRest = await server.request('POST', `/step?token=${token}`, { body: { action: { code: '1' } }, auth: false });
    t.expect(queryOnRest.status === 401, `POST /step?token=<right>: ${queryOnRest.status}`);
    // /web (no slash) only redirects to /web/, which then asks for the token.
    const web = await server.request('GET', '/web', { auth: false });
    t.expect(
      web.status === 401 || (web.status >= 300 && web.status < 400 && !web.text.includes('<html')),
      `GET /web without a token: ${web.status}`,
    );

    const handshakes: string[] = [];
    for (const socketPath of ['/ws', '/mcp', '/web/socket']) {
      for (const [name, suffix, headers] of [
        ['none', '', {}],
        ['wrong header', '', { authorization: 'Bearer wrong' }],
        ['wrong ?token=', '?token=wrong', {}],
      ] as const) {
        const refused = await server
          .socket(`${socketPath}${suffix}`, { auth: false, headers })
          .then(async (s) => {
            await s.close();
            return 'accepted';
          })
          .catch((error: Error) => error.message);
        t.expect(/401/.test(refused), `${socketPath} handshake with ${name}: ${refused}`);
      }
      handshakes.push(`${socketPath} refused ×3`);
    }
    for (const [name, suffix, auth] of [
      ['header', '', true],
      ['?token=', `?token=${token}`, false],
    ] as const) {
      const socket = await server.socket(`/ws${suffix}`, { auth });
      const state = await socket.request({ type: 'state' });
      t.expect(state.type === 'state', `/ws with the token by ${name}: ${JSON.stringify(state).slice(0, 200)}`);
      await socket.close();
      handshakes.push(`/ws accepted by ${name}`);
    }
    const health = await server.request('GET', '/health', { auth: false });
    t.expect(health.status === 200, `/health without a token: ${health.status}`);
    return `${routes.length} routes × ${wrongs.length} bad tokens = ${checked} requests → ${[...refusedWith].join('/')} (200 only /health); POST /step?token= → ${queryOnRest.status}; GET /web → ${web.status}; ${handshakes.join(', ')}`;
  },
};

const otherSessions: Case = {
  id: '18e',
  title: "HTTP: another client's session id",
  sent: "a JSON-RPC session id used by a second client; an MCP session id as an OpenEnv one and back; a /ws episode id as a session id; two /ws connections' variables and state",
  async run(t) {
    const server = await t.httpServer();
    // A JSON-RPC session id is a bearer capability: whoever holds it uses that session (and only that one).
    const sid = (await rpc(server, 'openenv/session/create')).result?.session_id as string;
    t.expect(typeof sid === 'string', 'openenv/session/create gave no session_id');
    const call = (code: string, sessionId: string) =>
      rpc(server, 'tools/call', { name: 'execute_python', arguments: { code }, session_id: sessionId });
    await call('owner_secret = "A"', sid);
    const other = await server.socket(); // a second client, on its own connection
    const viaOther = await other.request({
      type: 'mcp',
      data: {
        jsonrpc: '2.0',
        id: 2,
        method: 'tools/call',
        params: { name: 'execute_python', arguments: { code: 'print(owner_secret)' }, session_id: sid },
      },
    });
    t.expect(
      viaOther.data?.result?.data?.stdout === 'A\n',
      `the holder of the id reaches that session: ${JSON.stringify(viaOther).slice(0, 200)}`,
    );
    const ownEpisode = await other.request({ type: 'step', data: { code: 'print(owner_secret)' } });
    t.expect(
      ownEpisode.data?.observation?.exit_code === 1,
      `the second client's own episode sees the first's variable: ${JSON.stringify(ownEpisode).slice(0, 200)}`,
    );

    // Ids never cross transports: an MCP session id is unknown to OpenEnv JSON-RPC and back.
    const mcpId = await mcpInitialize(server);
    t.expect(mcpId, 'MCP initialize gave no Mcp-Session-Id');
    const mcpAsOpenEnv = await call('print(1)', mcpId ?? 'none');
    t.expect(
      mcpAsOpenEnv.error?.code === -32602 && /Unknown session_id/.test(mcpAsOpenEnv.error.message),
      `an MCP session id as session_id: ${JSON.stringify(mcpAsOpenEnv).slice(0, 200)}`,
    );
    const openEnvAsMcp = await server.request('POST', '/mcp', {
      headers: { ...MCP_HEADERS, 'mcp-session-id': sid },
      body: { jsonrpc: '2.0', id: 3, method: 'tools/list', params: {} },
    });
    t.expect(
      openEnvAsMcp.status === 404,
      `an OpenEnv session id as Mcp-Session-Id: ${openEnvAsMcp.status} ${openEnvAsMcp.text.slice(0, 120)}`,
    );
    const state = await other.request({ type: 'state' });
    const episodeId = String(state.data?.episode_id);
    const wsAsOpenEnv = await call('print(1)', episodeId);
    t.expect(
      /Unknown session_id/.test(wsAsOpenEnv.error?.message ?? ''),
      `a /ws episode id as session_id: ${JSON.stringify(wsAsOpenEnv).slice(0, 200)}`,
    );
    const madeUp = await call('print(1)', `${sid.slice(0, -4)}0000`);
    t.expect(/Unknown session_id/.test(madeUp.error?.message ?? ''), `a made-up session_id: ${JSON.stringify(madeUp).slice(0, 200)}`);
    if (mcpId) await server.request('DELETE', '/mcp', { headers: { 'mcp-session-id': mcpId } });

    // Two /ws connections: neither sees the other's variables or state.
    const [one, two] = await Promise.all([server.socket(), server.socket()]);
    await one.request({ type: 'reset', data: { episode_id: 'episode-one' } });
    await one.request({ type: 'step', data: { code: 'mine = 1' } });
    await one.request({ type: 'step', data: { code: 'mine += 1' } });
    const seen = await two.request({ type: 'step', data: { code: 'print(mine)' } });
    t.expect(
      seen.data?.observation?.exit_code === 1 && /NameError/.test(seen.data.observation.stderr),
      `/ws two saw one's variable: ${JSON.stringify(seen).slice(0, 200)}`,
    );
    const [stateOne, stateTwo] = [await one.request({ type: 'state' }), await two.request({ type: 'state' })];
    t.expect(
      stateOne.data?.episode_id === 'episode-one' && stateOne.data?.step_count === 2,
      `/ws one's state: ${JSON.stringify(stateOne.data)}`,
    );
    t.expect(
      stateTwo.data?.episode_id !== 'episode-one' && stateTwo.data?.step_count === 1,
      `/ws two's state: ${JSON.stringify(stateTwo.data)}`,
    );

    // The second client may also close the first's JSON-RPC session: the first then gets Unknown session_id.
    const closed = await rpc(server, 'openenv/session/close', { session_id: sid });
    t.expect(closed.result?.closed === true, `closing by id: ${JSON.stringify(closed)}`);
    const afterClose = await call('print(owner_secret)', sid);
    t.expect(/Unknown session_id/.test(afterClose.error?.message ?? ''), `after close: ${JSON.stringify(afterClose).slice(0, 200)}`);
    await Promise.all([one.close(), two.close(), other.close()]);
    return (
      'JSON-RPC id works for any holder (a bearer capability) and only as that session; MCP id as session_id → ' +
      `${mcpAsOpenEnv.error?.code}, OpenEnv id as Mcp-Session-Id → ${openEnvAsMcp.status}, /ws episode id and a made-up id → unknown; ` +
      '/ws connections isolated (NameError, own episode_id and step_count); closed id → unknown'
    );
  },
};

function traceFiles(dataDir: string): string[] {
  try {
    return readdirSync(path.join(dataDir, 'traces')).filter((name) => name.endsWith('.jsonl') && name !== 'index.jsonl');
  } catch {
    return [];
  }
}

const STEP_SESSIONS = 16;
const STEPS = 200;
const ROLLOUTS = 8;
/**
 * The server's peak RSS bound. Everything heavy runs in sandbox processes (Python, opencode); the server holds sockets,
 * episode state, the recording proxy's buffers and trace writers: ~80 MiB idle, ~130 MiB under this load. 512 MiB is
 * four times that (no flakiness from GC timing), yet a leak of 100 KiB per step (3,200 steps) would cross it.
 */
const PEAK_RSS_BOUND_MIB = 512;

const load: Case = {
  id: '18f',
  title: 'HTTP: load over /ws',
  alone: true,
  sent: `${STEP_SESSIONS} /ws sessions × ${STEPS} execute_python steps, plus ${ROLLOUTS} concurrent run_rollout call_tool steps (scripted model), MAX_CONCURRENT_ENVS=32`,
  async run(t: CaseContext) {
    const llm = await t.scripted(exampleScript('script.json'));
    const server = await t.httpServer({ env: { MAX_CONCURRENT_ENVS: '32' } });
    await server.pythonOnce('print(1)');
    const peakBefore = server.peakRssMiB();
    const errors: string[] = [];
    const started = performance.now();
    let stepsDone = 0;
    let stepsSeconds = 0;
    let rolloutsDone = 0;
    let rolloutsInFlightAtStepsEnd = -1;
    const steps = Array.from({ length: STEP_SESSIONS }, async (_, s) => {
      const socket = await server.socket();
      try {
        for (let i = 1; i <= STEPS; i++) {
          // The counter checks the episode kept its state and the replies came in order.
          const frame = await socket.request({ type: 'step', data: { code: `n = globals().get('n', 0) + 1\nprint(n)` } });
          if (frame.data?.observation?.stdout !== `${i}\n`) errors.push(`session ${s} step ${i}: ${JSON.stringify(frame).slice(0, 160)}`);
          stepsDone += 1;
        }
      } catch (error) {
        errors.push(`session ${s}: ${(error as Error).message}`);
      } finally {
        stepsSeconds = Math.max(stepsSeconds, (performance.now() - started) / 1000);
        rolloutsInFlightAtStepsEnd = ROLLOUTS - rolloutsDone;
        await socket.close();
      }
    });
    const rollouts = Array.from({ length: ROLLOUTS }, async (_, r) => {
      const socket = await server.socket();
      try {
        const args = { ...exampleTask(), task_id: `load-${r}`, base_url: llm.url, model: 'scripted-model' };
        const frame = await socket.request(
          { type: 'step', data: { type: 'call_tool', tool_name: 'run_rollout', arguments: args } },
          { timeoutMs: 230_000 },
        );
        const observation = frame.data?.observation;
        const result = typeof observation?.result?.data === 'string' ? JSON.parse(observation.result.data) : null;
        if (observation?.error !== null || result?.reward !== 1) errors.push(`rollout ${r}: ${JSON.stringify(frame).slice(0, 300)}`);
      } catch (error) {
        errors.push(`rollout ${r}: ${(error as Error).message}`);
      } finally {
        rolloutsDone += 1;
        await socket.close();
      }
    });
    await Promise.all([...steps, ...rollouts]);
    const seconds = (performance.now() - started) / 1000;
    const peakAfter = server.peakRssMiB();
    const traces = traceFiles(server.workspace.dataDir).length;
    t.expect(errors.length === 0, `${errors.length} errors: ${errors.slice(0, 3).join(' | ')}`);
    t.expect(stepsDone === STEP_SESSIONS * STEPS, `${stepsDone} of ${STEP_SESSIONS * STEPS} steps done`);
    t.expect(traces === ROLLOUTS, `${traces} traces stored for ${ROLLOUTS} rollouts`);
    t.expect(peakAfter < PEAK_RSS_BOUND_MIB, `server peak RSS ${peakAfter.toFixed(0)} MiB (bound ${PEAK_RSS_BOUND_MIB} MiB)`);
    return (
      `${stepsDone} steps in ${stepsSeconds.toFixed(1)} s (${(stepsDone / stepsSeconds).toFixed(0)} steps/s), ${rolloutsInFlightAtStepsEnd} of ${ROLLOUTS} rollouts still in flight at the last step ` +
      `(all done in ${seconds.toFixed(1)} s), ${errors.length} errors, ${traces} traces stored; server peak RSS ${peakBefore.toFixed(0)} → ` +
      `${peakAfter.toFixed(0)} MiB (bound ${PEAK_RSS_BOUND_MIB})`
    );
  },
};

export const httpCases: Case[] = [malformed, slowClients, abandoned, tokens, otherSessions, load];
