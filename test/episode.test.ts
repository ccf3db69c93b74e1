import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { errorText, startServer, type RunningServer } from './helpers/server.js';

describe('episodes: reset and get_state', () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server.close();
  });

  it('lists exactly the four tools, each with input and output schemas', async () => {
    const { tools } = await server.client.listTools();
    assert.deepEqual(tools.map((t) => t.name).sort(), ['execute_python', 'get_state', 'reset', 'run_rollout']);
    for (const tool of tools) {
      assert.ok(tool.description && tool.description.length > 40, `${tool.name} has a description`);
      assert.equal(tool.inputSchema.type, 'object');
      assert.equal(
        (tool.inputSchema as { additionalProperties?: unknown }).additionalProperties,
        false,
        `${tool.name} rejects unknown fields`,
      );
      assert.equal(tool.outputSchema?.type, 'object');
      assert.ok((tool.outputSchema as { title?: string }).title, `${tool.name}'s output schema has a title`);
      const undescribed = Object.entries(tool.outputSchema?.properties ?? {}).filter(
        ([, schema]) => !(schema as { description?: string }).description,
      );
      assert.deepEqual(
        undescribed.map(([field]) => field),
        [],
        `every field of ${tool.name}'s output is described`,
      );
    }
  });

  it('advertises only what it does: a fixed tool list, trace resources that change, and logging', () => {
    const capabilities = server.client.getServerCapabilities();
    assert.deepEqual(capabilities?.tools, {}, 'the tool list never changes, so no listChanged');
    assert.equal(capabilities?.resources?.listChanged, true, 'the trace list changes after every rollout');
    assert.deepEqual(capabilities?.logging, {});
  });

  it('creates the sandbox lazily and counts steps', async () => {
    const initial = await server.callOk('get_state');
    assert.equal(initial.step_count, 0);
    assert.equal(initial.last_exit_code, null, 'no call has run yet');
    assert.equal(initial.sandbox_id, null);
    assert.equal(initial.python_running, false);
    assert.equal(initial.sandbox_backend, 'local');
    assert.ok(
      ['bubblewrap', 'none'].includes(initial.isolation),
      `the backend's real isolation before any sandbox exists: ${initial.isolation}`,
    );
    assert.equal(initial.rollouts_completed, 0);
    assert.equal(initial.rollouts_cancelled, 0);
    assert.equal(readdirSync(server.sandboxRoot).length, 0, 'no sandbox before first use');

    await server.callOk('execute_python', { code: 'a = 1' });
    await server.callOk('execute_python', { code: '1/0' });
    const state = await server.callOk('get_state');
    assert.equal(state.step_count, 2);
    assert.equal(state.last_exit_code, 1);
    assert.equal(state.episode_id, initial.episode_id);
    assert.match(state.sandbox_id, /^episode-/);
    assert.equal(state.python_running, true);
    assert.equal(readdirSync(server.sandboxRoot).length, 1);
  });

  it('reset discards the sandbox, its files and the interpreter state', async () => {
    const before = await server.callOk('get_state');
    await server.callOk('execute_python', { code: "secret = 42\nopen('note.txt', 'w').write('hi')" });
    const oldDir = `${server.sandboxRoot}/opencode-env-${before.sandbox_id}`;
    assert.ok(existsSync(oldDir));

    const state = await server.callOk('reset', { episode_id: 'episode-two', seed: 7 });
    assert.equal(state.episode_id, 'episode-two');
    assert.equal(state.seed, 7);
    assert.equal(state.step_count, 0);
    assert.equal(state.last_exit_code, null);
    assert.equal(state.sandbox_id, null);
    assert.ok(!existsSync(oldDir), 'the old sandbox directory is deleted');

    const probe = await server.callOk('execute_python', { code: "import os\n('secret' in globals(), os.path.exists('note.txt'))" });
    assert.equal(probe.stdout, '(False, False)\n');
    assert.equal(probe.state_lost, false, 'a reset is not a loss: the caller asked for it');
    const after = await server.callOk('get_state');
    assert.notEqual(after.sandbox_id, before.sandbox_id);
    assert.equal(after.step_count, 1);
  });

  it('a seed makes random numbers repeat across resets', async () => {
    await server.callOk('reset', { seed: 1234 });
    const first = await server.callOk('execute_python', { code: 'import random\n[random.random() for _ in range(3)]' });
    await server.callOk('reset', { seed: 1234 });
    const second = await server.callOk('execute_python', { code: 'import random\n[random.random() for _ in range(3)]' });
    assert.equal(first.stdout, second.stdout);
    // OpenEnv's Python client sends null and "" for what it was not given: they mean "not given".
    await server.callOk('reset', { seed: null, episode_id: '' });
    const unseeded = await server.callOk('get_state');
    assert.equal(unseeded.seed, null);
    assert.match(unseeded.episode_id, /^[0-9a-f-]{36}$/);
  });

  it('a reset during a running call ends that call instead of leaking into the new episode', async () => {
    await server.callOk('execute_python', { code: 'x = 1' });
    const running = server.call('execute_python', { code: 'import time\ntime.sleep(30)' });
    await new Promise((resolve) => setTimeout(resolve, 500));
    const state = await server.callOk('reset');
    const result = await running;
    assert.equal(result.isError, undefined);
    const structured = result.structuredContent as Record<string, unknown>;
    assert.equal(structured.exit_code, 1);
    assert.match(String(structured.stderr), /reset/);
    const after = await server.callOk('get_state');
    assert.equal(after.episode_id, state.episode_id);
    assert.equal(after.step_count, 0, 'the interrupted call is not counted in the new episode');
  });
});

describe('bad arguments get an error that names the field', () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server.close();
  });

  const cases: Array<[string, string, Record<string, unknown>, RegExp]> = [
    ['wrong type', 'execute_python', { code: 42 }, /expected string.*code|code.*expected string/],
    ['missing code', 'execute_python', {}, /code/],
    ['empty code', 'execute_python', { code: '' }, /code must not be empty/],
    ['unknown field', 'execute_python', { code: '1', cod: 'typo' }, /Unrecognized key.*"cod"/],
    ['negative timeout', 'execute_python', { code: '1', timeout_s: -1 }, /timeout_s/],
    ['timeout as string', 'execute_python', { code: '1', timeout_s: '5' }, /timeout_s/],
    ['negative seed', 'reset', { seed: -3 }, /seed/],
    ['fractional seed', 'reset', { seed: 1.5 }, /seed/],
    ['overlong episode id', 'reset', { episode_id: 'x'.repeat(300) }, /episode_id/],
    ['unknown field on get_state', 'get_state', { verbose: true }, /verbose/],
  ];
  for (const [label, tool, args, expected] of cases) {
    it(`${label} (${tool})`, async () => {
      const result = await server.call(tool, args);
      assert.equal(result.isError, true);
      assert.match(errorText(result), expected);
    });
  }

  it('an unknown tool is an error, and none of this changed the episode', async () => {
    const result = await server.call('run_python', { code: 'x' });
    assert.equal(result.isError, true);
    assert.match(errorText(result), /Tool run_python not found/);
    const state = await server.callOk('get_state');
    assert.equal(state.step_count, 0);
  });
});
