import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { rolloutResultSchema } from '../src/core/rollout/schema.js';
import {
  callToolObservationSchema,
  codeObservationSchema,
  jsonRpcResponseSchema,
  listToolsObservationSchema,
  serializedObservationSchema,
  wsServerFrameSchema,
} from '../src/transports/openenv/wire.js';
import { startHttpServer, type HttpServerProcess } from './helpers/http-server.js';
import { exampleScript, exampleTask, startScripted, type ScriptedLlm } from './helpers/scripted.js';
import { sandboxDescendants, waitFor } from './helpers/server.js';

/**
 * Replays OpenEnv's client flows (env_client.py, mcp_client.py, coding_env's client; ../shared/reference/openenv.md)
 * against the built server in HTTP mode, and checks every frame's shape against the wire schemas.
 */

/** A WebSocket client as OpenEnv's: send one message, wait for exactly one reply. */
class Socket {
  private readonly frames: unknown[] = [];
  private waiting: ((frame: unknown) => void) | null = null;
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (raw) => {
      const frame = JSON.parse((raw as Buffer).toString('utf8')) as unknown;
      if (this.waiting) {
        const deliver = this.waiting;
        this.waiting = null;
        deliver(frame);
      } else this.frames.push(frame);
    });
    this.closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  static async open(url: string, headers: Record<string, string> = {}): Promise<Socket> {
    const ws = new WebSocket(url, { headers });
    // Listening before the handshake completes: a frame sent at once (CAPACITY_REACHED) can arrive with the handshake.
    const socket = new Socket(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`handshake refused: ${res.statusCode}`)));
    });
    return socket;
  }

  next(timeoutMs = 120_000): Promise<any> {
    const queued = this.frames.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no reply frame')), timeoutMs);
      this.waiting = (frame) => {
        clearTimeout(timer);
        resolve(frame);
      };
    });
  }

  async request(message: unknown, timeoutMs?: number): Promise<any> {
    this.ws.send(typeof message === 'string' ? message : JSON.stringify(message));
    const frame = await this.next(timeoutMs);
    return frame;
  }

  /** A /ws reply frame, checked against the wire schema. */
  async frame(message: unknown, timeoutMs?: number): Promise<any> {
    const frame = await this.request(message, timeoutMs);
    const parsed = wsServerFrameSchema.safeParse(frame);
    assert.ok(parsed.success, `not an OpenEnv server frame: ${JSON.stringify(frame)}`);
    return frame;
  }

  close(): void {
    this.ws.terminate();
  }
}

/** The exact observation frame of a code step: stdout, stderr, exit_code and nothing else. */
function assertCodeObservation(frame: any, expected: { stdout: string; exit_code: number }): void {
  assert.equal(frame.type, 'observation', JSON.stringify(frame));
  assert.deepEqual(Object.keys(frame.data).sort(), ['done', 'observation', 'reward'], JSON.stringify(frame.data));
  assert.deepEqual(Object.keys(frame.data.observation).sort(), ['exit_code', 'stderr', 'stdout'], JSON.stringify(frame.data));
  assert.ok(codeObservationSchema.safeParse(frame.data.observation).success, 'a CodeObservation');
  assert.equal(frame.data.observation.stdout, expected.stdout);
  assert.equal(frame.data.observation.exit_code, expected.exit_code);
  assert.equal(frame.data.done, false);
}

/** The result record of every finished trace (the last line of each trace file). */
function finishedTraceResults(dataDir: string): Array<Record<string, any>> {
  const dir = path.join(dataDir, 'traces');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((name) => name.endsWith('.jsonl') && name !== 'index.jsonl')
    .map((name) => readFileSync(path.join(dir, name), 'utf8').trim().split('\n').at(-1)!)
    .map((line) => JSON.parse(line) as Record<string, any>)
    .filter((line) => line.type === 'result')
    .map((line) => line.result as Record<string, any>);
}

async function http(server: HttpServerProcess, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  const text = await response.text();
  return { status: response.status, body: text.length > 0 ? JSON.parse(text) : null };
}

describe('OpenEnv conformance over HTTP mode', { timeout: 600_000 }, () => {
  let server: HttpServerProcess;
  let llm: ScriptedLlm;
  before(async () => {
    [server, llm] = await Promise.all([startHttpServer({ ENABLE_WEB_INTERFACE: 'false' }), startScripted(exampleScript('script.json'))]);
  });
  after(async () => {
    await Promise.allSettled([server?.stop(), llm?.close()]);
  });

  test('EnvClient flow: reset → step → state → close', async () => {
    const socket = await Socket.open(`${server.wsUrl}/ws`);
    try {
      const reset = await socket.frame({ type: 'reset', data: {} });
      assert.deepEqual(reset, {
        type: 'observation',
        data: { observation: { stdout: '', stderr: '', exit_code: 0 }, reward: 0, done: false },
      });
      const step = await socket.frame({ type: 'step', data: { code: "print('hi')" } });
      assertCodeObservation(step, { stdout: 'hi\n', exit_code: 0 });
      assert.equal(step.data.reward, null, 'code steps carry no reward');
      const state = await socket.frame({ type: 'state' });
      assert.equal(state.type, 'state');
      assert.equal(typeof state.data.episode_id, 'string');
      assert.equal(state.data.step_count, 1);
      assert.equal(state.data.last_exit_code, 0);
      socket.ws.send(JSON.stringify({ type: 'close' }));
      const closed = await socket.closed;
      assert.equal(closed.code, 1000, 'the server closes the socket on a close frame');
    } finally {
      socket.close();
    }
  });

  test('CodingEnv: state persists across steps, errors are exit_code 1 with a traceback, reset clears', async () => {
    const socket = await Socket.open(`${server.wsUrl}/ws`);
    try {
      await socket.frame({ type: 'reset' });
      assertCodeObservation(await socket.frame({ type: 'step', data: { code: 'x = 41' } }), { stdout: '', exit_code: 0 });
      assertCodeObservation(await socket.frame({ type: 'step', data: { code: 'print(x + 1)' } }), { stdout: '42\n', exit_code: 0 });
      const failed = await socket.frame({ type: 'step', data: { code: '1 / 0' } });
      assertCodeObservation(failed, { stdout: '', exit_code: 1 });
      assert.match(failed.data.observation.stderr, /ZeroDivisionError/);
      const reset = await socket.frame({ type: 'reset', data: { seed: 3, episode_id: 'episode-two', unknown_kwarg: true } });
      assert.equal(reset.data.reward, 0);
      const after = await socket.frame({ type: 'step', data: { code: 'print(x)' } });
      assertCodeObservation(after, { stdout: '', exit_code: 1 });
      assert.match(after.data.observation.stderr, /NameError/);
      const state = await socket.frame({ type: 'state' });
      assert.equal(state.data.episode_id, 'episode-two');
      assert.equal(state.data.step_count, 1);
      assert.equal(state.data.seed, 3);
    } finally {
      socket.close();
    }
  });

  test('MCPToolClient: list_tools and call_tool (execute_python), tool errors', async () => {
    const socket = await Socket.open(`${server.wsUrl}/ws`);
    try {
      const listed = await socket.frame({ type: 'step', data: { type: 'list_tools' } });
      assert.ok(
        listToolsObservationSchema.safeParse(listed.data.observation).success,
        JSON.stringify(listed.data.observation).slice(0, 500),
      );
      const names = listed.data.observation.tools.map((tool: { name: string }) => tool.name);
      assert.deepEqual(names, ['run_rollout', 'execute_python', 'reset', 'get_state']);
      const python = listed.data.observation.tools.find((tool: { name: string }) => tool.name === 'execute_python');
      assert.equal(python.input_schema.type, 'object');
      assert.ok(python.input_schema.properties.code, 'input_schema lists code');
      assert.equal(listed.data.reward, null);

      const called = await socket.frame({
        type: 'step',
        data: { type: 'call_tool', tool_name: 'execute_python', arguments: { code: 'y = 6 * 7\nprint(y)' } },
      });
      const observation = called.data.observation;
      assert.ok(callToolObservationSchema.safeParse(observation).success, JSON.stringify(observation));
      assert.equal(observation.tool_name, 'execute_python');
      assert.equal(observation.error, null);
      assert.deepEqual(Object.keys(observation.result).sort(), ['content', 'data', 'is_error', 'meta', 'structured_content']);
      assert.equal(observation.result.is_error, false);
      // MCPToolClient.call_tool returns result["data"]: the structured value.
      assert.equal(observation.result.data.stdout, '42\n');
      assert.equal(observation.result.data.exit_code, 0);
      assert.deepEqual(JSON.parse(observation.result.content[0].text), observation.result.data);
      // The call ran on this connection's episode: a code step sees its variable.
      assertCodeObservation(await socket.frame({ type: 'step', data: { code: 'print(y)' } }), { stdout: '42\n', exit_code: 0 });

      const missing = await socket.frame({ type: 'step', data: { type: 'call_tool', tool_name: 'no_such_tool', arguments: {} } });
      assert.equal(missing.data.observation.error.error_type, 'tool_not_found');
      assert.equal(missing.data.observation.result, null);
      const invalid = await socket.frame({
        type: 'step',
        data: { type: 'call_tool', tool_name: 'execute_python', arguments: { cod: 'x' } },
      });
      assert.equal(invalid.data.observation.error.error_type, 'invalid_args');
      assert.match(invalid.data.observation.error.message, /code/);
    } finally {
      socket.close();
    }
  });

  test('OpenCodeEnv: run_rollout over call_tool gives the RolloutResult JSON text, its reward and reward_components', async () => {
    const socket = await Socket.open(`${server.wsUrl}/ws`);
    try {
      const task = exampleTask();
      // The verifier also writes reward.json with a further named reward.
      const testScript = `${task.test_script}\necho '{"reward": 1.0, "style": 0.25}' > "$HOME/logs/verifier/reward.json"\n`;
      const args = { ...task, test_script: testScript, base_url: llm.url, model: 'scripted-model' };
      await socket.frame({ type: 'reset' });
      const frame = await socket.frame({ type: 'step', data: { type: 'call_tool', tool_name: 'run_rollout', arguments: args } }, 300_000);
      assert.ok(serializedObservationSchema.safeParse(frame.data).success, JSON.stringify(frame.data).slice(0, 500));
      const { observation } = frame.data;
      assert.equal(observation.error, null, JSON.stringify(observation.error));
      assert.equal(typeof observation.result.data, 'string', 'data is the RolloutResult JSON text');
      const result = rolloutResultSchema.parse(JSON.parse(observation.result.data));
      assert.equal(result.reward, 1, `reward 1 (error: ${result.error})`);
      assert.deepEqual(result.rewards, { style: 0.25 });
      assert.equal(observation.result.content[0].text, observation.result.data);
      assert.equal(frame.data.reward, 1);
      assert.deepEqual(frame.data.metadata, { reward_components: [{ name: 'style', value: 0.25 }] });
      const state = await socket.frame({ type: 'state' });
      assert.equal(state.data.rollouts_completed, 1);
      assert.equal(state.data.last_reward, 1);
    } finally {
      socket.close();
    }
  });

  test('malformed and invalid frames get error frames and the session continues', async () => {
    const socket = await Socket.open(`${server.wsUrl}/ws`);
    try {
      await socket.frame({ type: 'step', data: { code: 'kept = 1' } });
      const invalidJson = await socket.frame('{not json');
      assert.equal(invalidJson.type, 'error');
      assert.equal(invalidJson.data.code, 'INVALID_JSON');
      const unknown = await socket.frame({ type: 'dance' });
      assert.deepEqual(unknown, { type: 'error', data: { message: 'Unknown message type: dance', code: 'UNKNOWN_TYPE' } });
      const extra = await socket.frame({ type: 'state', extra: 1 });
      assert.equal(extra.data.code, 'VALIDATION_ERROR');
      assert.equal(extra.data.message, 'Invalid message');
      assert.equal(extra.data.errors[0].type, 'extra_forbidden');
      const badAction = await socket.frame({ type: 'step', data: { code: 'x', surprise: true } });
      assert.equal(badAction.data.code, 'VALIDATION_ERROR');
      const noData = await socket.frame({ type: 'step' });
      assert.equal(noData.data.code, 'VALIDATION_ERROR');
      assert.equal(noData.data.errors[0].type, 'missing');
      const emptyCode = await socket.frame({ type: 'step', data: { code: '' } });
      assert.equal(emptyCode.data.code, 'EXECUTION_ERROR');
      const badSeed = await socket.frame({ type: 'reset', data: { seed: -1 } });
      assert.equal(badSeed.data.code, 'EXECUTION_ERROR');
      assertCodeObservation(await socket.frame({ type: 'step', data: { code: 'print(kept)' } }), { stdout: '1\n', exit_code: 0 });
    } finally {
      socket.close();
    }
  });

  test('two sessions are isolated', async () => {
    const [one, two] = await Promise.all([Socket.open(`${server.wsUrl}/ws`), Socket.open(`${server.wsUrl}/ws`)]);
    try {
      await one.frame({ type: 'step', data: { code: 'secret = "one"' } });
      const seen = await two.frame({ type: 'step', data: { code: 'print(secret)' } });
      assertCodeObservation(seen, { stdout: '', exit_code: 1 });
      assert.match(seen.data.observation.stderr, /NameError/);
      const [stateOne, stateTwo] = [await one.frame({ type: 'state' }), await two.frame({ type: 'state' })];
      assert.notEqual(stateOne.data.episode_id, stateTwo.data.episode_id);
      assert.equal(stateOne.data.step_count, 1);
      assert.equal(stateTwo.data.step_count, 1);
    } finally {
      one.close();
      two.close();
    }
  });

  test('JSON-RPC over the mcp frame: session create, call, close; errors', async () => {
    const socket = await Socket.open(`${server.wsUrl}/ws`);
    try {
      const rpc = async (data: unknown) => {
        const frame = await socket.frame({ type: 'mcp', data });
        assert.equal(frame.type, 'mcp');
        assert.ok(jsonRpcResponseSchema.safeParse(frame.data).success, `a JSON-RPC response: ${JSON.stringify(frame.data)}`);
        return frame.data;
      };
      const listed = await rpc({ jsonrpc: '2.0', method: 'tools/list', params: {}, id: 1 });
      assert.equal(listed.id, 1);
      assert.ok(
        listed.result.tools.every((tool: any) => typeof tool.inputSchema === 'object'),
        'tools/list is camelCase MCP',
      );

      // On the connection's own session.
      const own = await rpc({
        jsonrpc: '2.0',
        method: 'tools/call',
        params: { name: 'execute_python', arguments: { code: 'z = 5' } },
        id: 2,
      });
      assert.deepEqual(Object.keys(own.result).sort(), ['content', 'data', 'is_error', 'meta', 'structured_content']);
      assertCodeObservation(await socket.frame({ type: 'step', data: { code: 'print(z)' } }), { stdout: '5\n', exit_code: 0 });

      // A session of its own, as MCPToolClient's production mode makes.
      const created = await rpc({ jsonrpc: '2.0', method: 'openenv/session/create', params: {}, id: 3 });
      const sessionId = created.result.session_id;
      assert.equal(typeof sessionId, 'string');
      const call = (code: string, id: number) =>
        rpc({ jsonrpc: '2.0', method: 'tools/call', params: { name: 'execute_python', arguments: { code }, session_id: sessionId }, id });
      await call('w = 9', 4);
      assert.equal((await call('print(w)', 5)).result.data.stdout, '9\n');
      assert.equal((await call('print(z)', 6)).result.data.exit_code, 1, 'the created session is not the connection');
      assert.deepEqual((await rpc({ jsonrpc: '2.0', method: 'openenv/session/close', params: { session_id: sessionId }, id: 7 })).result, {
        session_id: sessionId,
        closed: true,
      });
      const gone = await call('print(w)', 8);
      assert.equal(gone.error.code, -32602);
      assert.equal(gone.error.message, `Unknown session_id: ${sessionId}`);

      assert.equal((await rpc({})).error.code, -32600);
      assert.match((await rpc({})).error.message, /^Invalid request: /);
      assert.deepEqual(await rpc({ jsonrpc: '2.0', method: 'nope', id: 'a' }), {
        jsonrpc: '2.0',
        id: 'a',
        error: { code: -32601, message: 'Method not found: nope', data: null },
      });
      assert.equal((await rpc({ jsonrpc: '2.0', method: 'tools/list', params: [1], id: 9 })).error.code, -32602);
      assert.equal((await rpc({ jsonrpc: '2.0', method: 'tools/call', params: {}, id: 10 })).error.message, "Missing 'name' in params");
      assert.equal((await rpc({ jsonrpc: '2.0', method: 'tools/call', params: { name: 'nope' }, id: 11 })).error.code, -32603);
    } finally {
      socket.close();
    }
  });

  test('WebSocket /mcp: raw JSON-RPC frames on one session per connection', async () => {
    const socket = await Socket.open(`${server.wsUrl}/mcp`);
    try {
      const first = await socket.request({
        jsonrpc: '2.0',
        method: 'tools/call',
        params: { name: 'execute_python', arguments: { code: 'v = 3' } },
        id: 1,
      });
      assert.equal(first.result.is_error, false, JSON.stringify(first));
      const second = await socket.request({
        jsonrpc: '2.0',
        method: 'tools/call',
        params: { name: 'execute_python', arguments: { code: 'print(v)' } },
        id: 2,
      });
      assert.equal(second.result.data.stdout, '3\n');
      assert.deepEqual(await socket.request('{oops'), {
        jsonrpc: '2.0',
        id: null,
        error: { code: -32700, message: 'Parse error', data: null },
      });
    } finally {
      socket.close();
    }
  });

  test('stateless REST: /reset, /step, /state, /metadata, /schema, /openapi.json', async () => {
    const reset = await http(server, 'POST', '/reset', {});
    assert.equal(reset.status, 200);
    assert.deepEqual(reset.body, { observation: { stdout: '', stderr: '', exit_code: 0 }, reward: 0, done: false });
    assert.equal((await http(server, 'POST', '/reset')).status, 200, 'an empty body is {}');
    assert.equal((await http(server, 'POST', '/reset', { seed: -1 })).status, 422);

    const step = await http(server, 'POST', '/step', { action: { code: 'print(1 + 1)' }, timeout_s: 30, request_id: 'r-1' });
    assert.equal(step.status, 200);
    assert.deepEqual(step.body, { observation: { stdout: '2\n', stderr: '', exit_code: 0 }, reward: null, done: false });
    // Stateless: a later step does not see the earlier one's variables.
    await http(server, 'POST', '/step', { action: { code: 'kept = 1' } });
    assert.equal((await http(server, 'POST', '/step', { action: { code: 'print(kept)' } })).body.observation.exit_code, 1);
    const tools = await http(server, 'POST', '/step', { action: { type: 'list_tools' } });
    assert.equal(tools.body.observation.tools.length, 4);

    const missing = await http(server, 'POST', '/step', {});
    assert.equal(missing.status, 422);
    assert.deepEqual(missing.body.detail[0].loc, ['body', 'action']);
    assert.equal(missing.body.detail[0].type, 'missing');
    const extra = await http(server, 'POST', '/step', { action: { code: 'x', bogus: 1 } });
    assert.equal(extra.status, 422);
    assert.deepEqual(extra.body.detail[0].loc, ['body', 'action', 'bogus']);
    assert.equal((await http(server, 'POST', '/step', '{broken')).status, 400);

    const state = await http(server, 'GET', '/state');
    assert.equal(state.status, 200);
    assert.equal(state.body.step_count, 0);
    assert.equal(typeof state.body.episode_id, 'string');

    const metadata = await http(server, 'GET', '/metadata');
    assert.equal(typeof metadata.body.name, 'string');
    assert.equal(typeof metadata.body.description, 'string');
    assert.deepEqual(Object.keys(metadata.body).sort(), [
      'author',
      'description',
      'documentation_url',
      'name',
      'readme_content',
      'version',
    ]);
    const schema = await http(server, 'GET', '/schema');
    for (const key of ['action', 'observation', 'state']) assert.equal(typeof schema.body[key], 'object', `/schema has ${key}`);
    assert.ok(schema.body.state.properties.episode_id && schema.body.state.properties.step_count, 'the base State schema');
    const openapi = await http(server, 'GET', '/openapi.json');
    assert.equal(typeof openapi.body.info.version, 'string');
    for (const path of ['/reset', '/step', '/state']) assert.ok(openapi.body.paths[path], `openapi lists ${path} (simulation mode)`);
    assert.equal((await http(server, 'GET', '/health')).body.status, 'healthy');
  });
});

describe('OpenEnv capacity and auth', { timeout: 300_000 }, () => {
  const token = 'conformance-secret';
  const bearer = { authorization: `Bearer ${token}` };
  let server: HttpServerProcess;
  before(async () => {
    server = await startHttpServer({ MAX_CONCURRENT_ENVS: '1', OPENCODE_ENV_TOKEN: token, ENABLE_WEB_INTERFACE: 'false' });
  });
  after(async () => {
    await server?.stop();
  });

  test('REST needs the token; /health does not', async () => {
    for (const [method, path] of [
      ['GET', '/metadata'],
      ['GET', '/schema'],
      ['GET', '/openapi.json'],
      ['POST', '/reset'],
      ['POST', '/step'],
      ['GET', '/state'],
    ] as const) {
      assert.equal((await http(server, method, path)).status, 401, `${method} ${path} without a token`);
      assert.equal(
        (await http(server, method, path, undefined, { authorization: 'Bearer wrong' })).status,
        401,
        `${method} ${path} wrong token`,
      );
    }
    assert.equal((await http(server, 'GET', '/health')).status, 200);
    assert.equal((await http(server, 'GET', '/metadata', undefined, bearer)).status, 200);
  });

  test('the /ws handshake needs the token, by header or ?token=', async () => {
    await assert.rejects(Socket.open(`${server.wsUrl}/ws`), /401/);
    await assert.rejects(Socket.open(`${server.wsUrl}/ws?token=wrong`), /401/);
    // One at a time: the cap is 1.
    for (const [url, headers] of [
      [`${server.wsUrl}/ws`, bearer],
      [`${server.wsUrl}/ws?token=${token}`, {}],
    ] as const) {
      const socket = await Socket.open(url, headers);
      try {
        assert.equal((await socket.frame({ type: 'state' })).type, 'state', `accepted: ${url}`);
        socket.ws.send(JSON.stringify({ type: 'close' }));
        await socket.closed;
      } finally {
        socket.close();
      }
    }
  });

  test('past MAX_CONCURRENT_ENVS a /ws client gets CAPACITY_REACHED and is closed', async () => {
    const holder = await Socket.open(`${server.wsUrl}/ws`, bearer);
    try {
      await holder.frame({ type: 'state' });
      const refused = await Socket.open(`${server.wsUrl}/ws`, bearer);
      try {
        const frame = wsServerFrameSchema.parse(await refused.next());
        assert.deepEqual(frame, {
          type: 'error',
          data: {
            message: 'Server at capacity: 1/1 sessions active. Cannot accept new connections.',
            code: 'CAPACITY_REACHED',
            active_sessions: 1,
            max_sessions: 1,
          },
        });
        await refused.closed;
      } finally {
        refused.close();
      }
      assert.equal((await http(server, 'POST', '/reset', {}, bearer)).status, 503, 'stateless REST is refused too');
      // The holder is unaffected; once it leaves, its slot is free again.
      assert.equal((await holder.frame({ type: 'state' })).type, 'state');
    } finally {
      holder.close();
    }
    await holder.closed;
    let status = 0;
    for (let attempt = 0; attempt < 50 && status !== 200; attempt++) {
      status = (await http(server, 'POST', '/reset', {}, bearer)).status;
      if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(status, 200, 'the slot is released when the client disconnects');
  });
});

describe('OpenEnv sessions end with their client', { timeout: 300_000 }, () => {
  let server: HttpServerProcess;
  before(async () => {
    server = await startHttpServer({ OPENCODE_ENV_SESSION_IDLE_S: '2', ENABLE_WEB_INTERFACE: 'false' });
  });
  after(async () => {
    await server?.stop();
  });

  test('a call longer than the idle limit is answered; an idle connection is then closed by the reaper', async () => {
    const socket = await Socket.open(`${server.wsUrl}/ws`);
    try {
      const slow = await socket.frame({ type: 'step', data: { code: 'import time\ntime.sleep(3.5)\nprint("done")' } });
      assertCodeObservation(slow, { stdout: 'done\n', exit_code: 0 });
      const closed = await Promise.race([socket.closed, new Promise((resolve) => setTimeout(() => resolve('still open'), 10_000))]);
      assert.notEqual(closed, 'still open', 'the idle session was reaped and its socket closed');
    } finally {
      socket.close();
    }
  });

  test('a client that disconnects mid-rollout: the rollout is cancelled, its trace stored, nothing left running', async () => {
    const stalled = await startScripted({ turns: [{ text: 'thinking very slowly', delay_ms: 120_000 }] });
    const socket = await Socket.open(`${server.wsUrl}/ws`);
    try {
      const args = { ...exampleTask(), task_id: 'abandoned', base_url: stalled.url, model: 'scripted-model' };
      socket.ws.send(JSON.stringify({ type: 'step', data: { type: 'call_tool', tool_name: 'run_rollout', arguments: args } }));
      await waitFor(() => stalled.requests.some((request) => Array.isArray(request.body?.tools)), 60_000, 'the agent to call the model');
      socket.close();
      await waitFor(
        () => finishedTraceResults(server.dataDir).some((result) => result.task_id === 'abandoned'),
        60_000,
        'the cancelled trace',
      );
      const result = finishedTraceResults(server.dataDir).find((r) => r.task_id === 'abandoned')!;
      assert.equal(result.error_kind, 'cancelled', JSON.stringify(result.error));
      assert.equal(result.reward, null);
      await waitFor(async () => (await sandboxDescendants(server.pid)).length === 0, 30_000, 'no sandbox process left');
    } finally {
      socket.close();
      await stalled.close();
    }
  });
});
