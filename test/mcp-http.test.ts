// /mcp of `opencode-env http` end to end: MCP Streamable HTTP through the SDK's own client (sessions, SSE progress, trace
// resources, DELETE, capacity, token, DNS rebinding, body limit) and OpenEnv's plain JSON-RPC on the same path.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { startHttpServer, type HttpServerProcess } from './helpers/http-server.js';
import { exampleScript, exampleTask, startScripted, type ScriptedLlm } from './helpers/scripted.js';
import { waitFor } from './helpers/server.js';

interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json(): any;
}

/** A request exactly as given (fetch would not let a test forge Host). */
function raw(url: string, options: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: options.method ?? 'POST', headers: options.headers ?? {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) });
      });
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

const MCP_ACCEPT = 'application/json, text/event-stream';
const INITIALIZE = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '0' } },
});

async function connect(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const transport = new StreamableHTTPClientTransport(new URL('/mcp', url), { requestInit: { headers } });
  const client = new Client({ name: 'mcp-http-test', version: '0.0.0' });
  await client.connect(transport);
  return { client, transport };
}

async function callOk(client: Client, name: string, args: Record<string, unknown>): Promise<any> {
  const result = (await client.callTool({ name, arguments: args })) as CallToolResult;
  assert.ok(!result.isError, `${name} failed: ${JSON.stringify(result.content)}`);
  return result.structuredContent;
}

describe('/mcp over MCP Streamable HTTP', () => {
  let server: HttpServerProcess;
  const clients: Client[] = [];

  const sandboxes = () => readdirSync(server.sandboxRoot);

  before(async () => {
    server = await startHttpServer({ MAX_CONCURRENT_ENVS: '2' });
  });
  after(async () => {
    for (const client of clients) await client.close().catch(() => undefined);
    await server?.stop();
  });

  let first: { client: Client; transport: StreamableHTTPClientTransport };
  let second: { client: Client; transport: StreamableHTTPClientTransport };

  it('lists the tools and keeps Python state within a session', async () => {
    first = await connect(server.url);
    clients.push(first.client);
    assert.ok(first.transport.sessionId, 'the server named the session');
    const { tools } = await first.client.listTools();
    const names = tools.map((t) => t.name);
    for (const name of ['run_rollout', 'execute_python', 'get_state', 'reset'])
      assert.ok(names.includes(name), `${name} in ${names.join(', ')}`);
    await callOk(first.client, 'execute_python', { code: 'x = 41' });
    const answer = await callOk(first.client, 'execute_python', { code: 'print(x + 1)' });
    assert.equal(answer.stdout.trim(), '42');
  });

  it('keeps two clients apart, and refuses a third session past MAX_CONCURRENT_ENVS with 503', async () => {
    second = await connect(server.url);
    clients.push(second.client);
    assert.notEqual(second.transport.sessionId, first.transport.sessionId);
    const other = await callOk(second.client, 'execute_python', { code: 'print(x)' });
    assert.notEqual(other.exit_code, 0, 'the second session does not see the first one’s x');
    assert.match(other.stderr, /NameError/);
    assert.equal(sandboxes().length, 2, 'one sandbox per session');

    const refused = await raw(`${server.url}/mcp`, {
      headers: { 'content-type': 'application/json', accept: MCP_ACCEPT },
      body: INITIALIZE,
    });
    assert.equal(refused.status, 503, refused.text);
    const body = refused.json();
    assert.equal(body.error.code, -32000);
    assert.equal(body.id, 1);
    assert.match(body.error.message, /2\/2 sessions/);
    assert.deepEqual(body.error.data, { active_sessions: 2, max_sessions: 2 });
  });

  it('answers an unknown session id with 404, a missing one with 400, PUT with 405', async () => {
    const headers = { 'content-type': 'application/json', accept: MCP_ACCEPT, 'mcp-session-id': 'not-a-session' };
    const unknown = await raw(`${server.url}/mcp`, { headers, body: '{"jsonrpc":"2.0","id":2,"method":"tools/list"}' });
    assert.equal(unknown.status, 404, unknown.text);
    assert.equal(unknown.json().error.code, -32001);
    const noSession = await raw(`${server.url}/mcp`, {
      headers: { ...headers, 'mcp-session-id': '' },
      body: '{"jsonrpc":"2.0","id":2,"method":"tools/list"}',
    });
    assert.equal(noSession.status, 400, noSession.text);
    const put = await raw(`${server.url}/mcp`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(put.status, 405, put.text);
    assert.equal(put.headers.allow, 'GET, POST, DELETE');
  });

  it('DELETE ends the session and kills its sandbox', async () => {
    const id = second.transport.sessionId!;
    await second.transport.terminateSession();
    assert.equal(sandboxes().length, 1, `the deleted session's sandbox is gone: ${sandboxes().join(', ')}`);
    const after = await raw(`${server.url}/mcp`, {
      headers: { 'content-type': 'application/json', accept: MCP_ACCEPT, 'mcp-session-id': id },
      body: '{"jsonrpc":"2.0","id":3,"method":"tools/list"}',
    });
    assert.equal(after.status, 404, 'a deleted session is unknown');
    // The slot is free again: the first client's session id of another kind is unknown here, and OpenEnv's sessions count too.
    const created = await raw(`${server.url}/mcp`, { body: '{"jsonrpc":"2.0","id":1,"method":"openenv/session/create","params":{}}' });
    const openEnvSession = created.json().result.session_id as string;
    assert.ok(openEnvSession, created.text);
    const foreign = await raw(`${server.url}/mcp`, {
      headers: { 'content-type': 'application/json', accept: MCP_ACCEPT, 'mcp-session-id': openEnvSession },
      body: '{"jsonrpc":"2.0","id":4,"method":"tools/list"}',
    });
    assert.equal(foreign.status, 404, 'an OpenEnv session is not an MCP session');
    const closed = await raw(`${server.url}/mcp`, {
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'openenv/session/close', params: { session_id: openEnvSession } }),
    });
    assert.equal(closed.json().result.closed, true, closed.text);

    await first.transport.terminateSession();
    assert.deepEqual(sandboxes(), [], 'no sandbox left once every session is deleted');
  });
});

describe('/mcp sessions and the idle reaper', () => {
  const IDLE_S = 3;
  let server: HttpServerProcess;
  let llm: ScriptedLlm;
  let client: Client | undefined;
  let rolloutTransport: StreamableHTTPClientTransport | undefined;

  before(async () => {
    server = await startHttpServer({ OPENCODE_ENV_SESSION_IDLE_S: String(IDLE_S) });
    llm = await startScripted(exampleScript('script.json'));
  });
  after(async () => {
    await client?.close().catch(() => undefined);
    await llm?.close();
    await server?.stop();
  });

  it(
    'runs a rollout longer than the idle limit with progress over SSE, and serves its trace as a resource',
    { timeout: 300_000 },
    async () => {
      ({ client, transport: rolloutTransport } = await connect(server.url));
      const started = Date.now();
      const progress: string[] = [];
      const result = (await client.callTool(
        { name: 'run_rollout', arguments: { ...exampleTask(), base_url: llm.url, model: 'scripted-model' } },
        undefined,
        { timeout: 300_000, onprogress: (p) => void progress.push(p.message ?? '') },
      )) as CallToolResult;
      assert.ok(!result.isError, JSON.stringify(result.content));
      const rollout = result.structuredContent as Record<string, any>;
      assert.equal(rollout.reward, 1, JSON.stringify(rollout).slice(0, 2000));
      assert.ok(progress.includes('phase: agent'), `progress: ${progress.join(' | ')}`);
      const tookS = (Date.now() - started) / 1000;
      assert.ok(tookS > IDLE_S, `the rollout (${tookS} s) outlived the idle limit (${IDLE_S} s), so a call in flight kept its session`);

      const uri = `opencode-env://traces/${rollout.rollout_id}`;
      const { resources } = await client.listResources();
      assert.ok(
        resources.some((r) => r.uri === uri),
        `${uri} listed in ${resources.map((r) => r.uri).join(', ')}`,
      );
      const read = await client.readResource({ uri });
      const text = (read.contents[0] as { text: string }).text;
      assert.ok(text.includes(rollout.rollout_id), 'the trace names its rollout');
    },
  );

  it('closes idle sessions and their sandboxes: a client that vanished, and one still connected with its GET stream', async () => {
    const connected = rolloutTransport!.sessionId!;
    const vanished = await connect(server.url).then(async (c) => {
      await c.client.callTool({ name: 'execute_python', arguments: { code: 'z = 1' } });
      const sessionId = c.transport.sessionId!;
      await c.client.close(); // no DELETE: a client that just goes away
      return sessionId;
    });
    await waitFor(
      () => readdirSync(server.sandboxRoot).length === 0,
      (IDLE_S + 10) * 1000,
      'idle sessions and their sandboxes to be reaped',
    );
    for (const id of [vanished, connected]) {
      const gone = await raw(`${server.url}/mcp`, {
        headers: { 'content-type': 'application/json', accept: MCP_ACCEPT, 'mcp-session-id': id },
        body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
      });
      assert.equal(gone.status, 404, `session ${id} was reaped: ${gone.text}`);
    }
  });
});

describe('/mcp guards: token, DNS rebinding, body limit; OpenEnv JSON-RPC', () => {
  const TOKEN = 'mcp-http-test-token';
  const auth = { authorization: `Bearer ${TOKEN}` };
  let server: HttpServerProcess;
  let mcp: string;

  before(async () => {
    // 0.01 MB: about 10 kB of body at most.
    server = await startHttpServer({ OPENCODE_ENV_TOKEN: TOKEN, OPENCODE_ENV_HTTP_MAX_BODY_MB: '0.01' });
    mcp = `${server.url}/mcp`;
  });
  after(async () => {
    await server?.stop();
  });

  const rpc = async (body: string | Record<string, unknown>, headers: Record<string, string> = auth) => {
    const answer = await raw(mcp, {
      headers: { 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    assert.equal(answer.status, 200, `OpenEnv's JSON-RPC always answers 200: ${answer.text}`);
    return answer.json();
  };

  it('needs the bearer token; the SDK client with the header works', async () => {
    const headers = { 'content-type': 'application/json', accept: MCP_ACCEPT };
    const missing = await raw(mcp, { headers, body: INITIALIZE });
    assert.equal(missing.status, 401, missing.text);
    const wrong = await raw(mcp, { headers: { ...headers, authorization: 'Bearer nope' }, body: INITIALIZE });
    assert.equal(wrong.status, 401, wrong.text);
    await assert.rejects(
      connect(server.url),
      (error: { code?: unknown }) => error.code === 401,
      'the SDK client without the token is refused with 401',
    );

    const { client, transport } = await connect(server.url, auth);
    try {
      const { tools } = await client.listTools();
      assert.ok(tools.length >= 4, `tools listed: ${tools.length}`);
    } finally {
      await transport.terminateSession();
      await client.close();
    }
  });

  it('refuses a forged Host or a foreign Origin with 403 (DNS rebinding)', async () => {
    const headers = { ...auth, 'content-type': 'application/json', accept: MCP_ACCEPT };
    const port = new URL(server.url).port;
    const forged = await raw(mcp, { headers: { ...headers, host: `evil.example:${port}` }, body: INITIALIZE });
    assert.equal(forged.status, 403, forged.text);
    assert.match(forged.json().error.message, /Host/);
    const origin = await raw(mcp, { headers: { ...headers, origin: 'http://evil.example' }, body: INITIALIZE });
    assert.equal(origin.status, 403, origin.text);
    // OpenEnv's JSON-RPC on the same path is behind the same check.
    const openEnv = await raw(mcp, { headers: { ...auth, host: 'evil.example' }, body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' });
    assert.equal(openEnv.status, 403, openEnv.text);
    const local = await raw(mcp, { headers: { ...auth, host: `localhost:${port}`, origin: `http://localhost:${port}` }, body: '{}' });
    assert.equal(local.status, 200, `localhost is this server: ${local.text}`);
  });

  it('gives back the slot of an initialize the transport refuses (MAX_CONCURRENT_ENVS is 4 here)', async () => {
    for (let i = 0; i < 6; i++) {
      const refused = await raw(mcp, {
        headers: { ...auth, 'content-type': 'application/json', accept: 'application/json' },
        body: INITIALIZE,
      });
      assert.equal(refused.status, 406, `an initialize without text/event-stream in Accept: ${refused.text}`);
    }
    const { client, transport } = await connect(server.url, auth);
    try {
      assert.ok(transport.sessionId, 'a session could still be opened');
    } finally {
      await transport.terminateSession();
      await client.close();
    }
  });

  it('refuses a body over the limit with 413', async () => {
    const big = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: { pad: 'x'.repeat(20_000) } });
    const answer = await raw(mcp, { headers: { ...auth, 'content-type': 'application/json' }, body: big });
    assert.equal(answer.status, 413, answer.text);
    const mcpBig = await raw(mcp, { headers: { ...auth, 'content-type': 'application/json', accept: MCP_ACCEPT }, body: big });
    assert.equal(mcpBig.status, 413, mcpBig.text);
  });

  it('answers OpenEnv JSON-RPC: {} with -32600, bad JSON with -32700, and a session created, used and closed', async () => {
    const empty = await rpc({});
    assert.equal(empty.jsonrpc, '2.0');
    assert.equal(empty.error.code, -32600, JSON.stringify(empty));
    const garbled = await rpc('{"jsonrpc": ');
    assert.equal(garbled.error.code, -32700, JSON.stringify(garbled));
    // The same garbage from an MCP client gets the Streamable HTTP transport's answer instead: 400.
    const mcpGarbled = await raw(mcp, {
      headers: { ...auth, 'content-type': 'application/json', accept: MCP_ACCEPT },
      body: '{"jsonrpc": ',
    });
    assert.equal(mcpGarbled.status, 400, mcpGarbled.text);
    assert.equal(mcpGarbled.json().error.code, -32700);

    const listed = await rpc({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} });
    assert.ok(
      listed.result.tools.some((t: { name: string }) => t.name === 'execute_python'),
      JSON.stringify(listed).slice(0, 500),
    );

    const created = await rpc({ jsonrpc: '2.0', id: 2, method: 'openenv/session/create', params: {} });
    const sessionId = created.result.session_id as string;
    assert.ok(sessionId, JSON.stringify(created));
    const call = (id: number, code: string) =>
      rpc({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'execute_python', arguments: { code }, session_id: sessionId } });
    const set = await call(3, 'y = 6 * 7');
    assert.equal(set.result.is_error, false, JSON.stringify(set));
    const got = await call(4, 'print(y)');
    assert.equal(got.id, 4);
    assert.equal(got.result.data.stdout.trim(), '42', JSON.stringify(got));
    const closed = await rpc({ jsonrpc: '2.0', id: 5, method: 'openenv/session/close', params: { session_id: sessionId } });
    assert.deepEqual(closed.result, { session_id: sessionId, closed: true });
    await waitFor(() => readdirSync(server.sandboxRoot).length === 0, 10_000, 'the closed session’s sandbox to go');
    const gone = await call(6, 'print(y)');
    assert.equal(gone.error.code, -32602, JSON.stringify(gone));
  });
});
