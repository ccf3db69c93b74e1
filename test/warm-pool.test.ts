// OPENCODE_ENV_WARM_POOL through the real MCP server: the first rollout starts cold and points the pool at its
// opencode settings; the next one takes a warm opencode and gets the same outcome; nothing is left behind at exit.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { serverEnv, startE2bStandIn, type E2bStandIn } from './helpers/e2b-standin/index.js';
import { exampleScript, exampleTask, startScripted, type ScriptedLlm } from './helpers/scripted.js';
import { startServer, waitFor, type RunningServer } from './helpers/server.js';

describe('the warm pool (OPENCODE_ENV_WARM_POOL=1)', () => {
  let server: RunningServer;
  let llm: ScriptedLlm;
  before(async () => {
    [server, llm] = await Promise.all([startServer({ env: { OPENCODE_ENV_WARM_POOL: '1' } }), startScripted(exampleScript('script.json'))]);
  });
  after(async () => {
    await Promise.all([server?.close(), llm?.close()]);
  });

  const rollout = async (taskId: string) => {
    try {
      return await server.callOk('run_rollout', { ...exampleTask(), task_id: taskId, base_url: llm.url, model: 'scripted-model' });
    } catch (error) {
      throw new Error(`${(error as Error).message}; server stderr: ${server.stderr().slice(-3000)}`, { cause: error });
    }
  };
  // The server removes its sandbox root at exit.
  const sandboxDirs = () =>
    existsSync(server.sandboxRoot) ? readdirSync(server.sandboxRoot).filter((name) => name.startsWith('opencode-env-')) : [];

  it('starts the first rollout cold, the next warm, with the same outcome, and kills the idle one at exit', async () => {
    const cold = await rollout('cold');
    assert.equal(cold.warm_start, false, 'nothing was warm before the first rollout');
    assert.equal(cold.reward, 1, JSON.stringify(cold.error));
    // The pool now makes one sandbox with opencode started for the same settings.
    await waitFor(() => sandboxDirs().length === 1, 90_000, 'a warm sandbox to be made');
    let warm: Record<string, any> = {};
    for (let attempt = 0; attempt < 60; attempt++) {
      warm = await rollout(`warm-${attempt}`);
      if (warm.warm_start) break;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    assert.equal(warm.warm_start, true, 'a later rollout took the warm opencode');
    assert.equal(warm.reward, 1, JSON.stringify(warm.error));
    assert.deepEqual(
      warm.agent_events.map((e: { type: string }) => e.type),
      cold.agent_events.map((e: { type: string }) => e.type),
      'the same events, warm or cold',
    );
    assert.deepEqual(Object.keys(warm.files).sort(), Object.keys(cold.files).sort());
    assert.equal(warm.files['fizzbuzz.py'], cold.files['fizzbuzz.py']);
    assert.equal(warm.proxy_turns.length, cold.proxy_turns.length, 'as many model calls');
    assert.ok(
      warm.timings.sandbox < cold.timings.sandbox,
      `the warm sandbox came ready (${warm.timings.sandbox} s vs ${cold.timings.sandbox} s)`,
    );
    process.stderr.write(`warm pool: cold ${JSON.stringify(cold.timings)}\nwarm pool: warm ${JSON.stringify(warm.timings)}\n`);
    // The pool refills after a take; at exit the refilled one goes too.
    await waitFor(() => sandboxDirs().length === 1, 90_000, 'the pool to refill');
    await server.close();
    assert.deepEqual(sandboxDirs(), [], 'no sandbox left after the server exited');
  });
});

describe('the warm pool on E2B (stand-in)', () => {
  let standIn: E2bStandIn;
  let server: RunningServer;
  let llm: ScriptedLlm;
  before(async () => {
    standIn = await startE2bStandIn();
    [server, llm] = await Promise.all([
      startServer({ env: serverEnv(standIn, { OPENCODE_ENV_WARM_POOL: '1' }) }),
      startScripted(exampleScript('script.json')),
    ]);
  });
  after(async () => {
    await Promise.all([server?.close(), llm?.close()]);
    await standIn?.close();
  });

  it('takes a warm opencode through the relay channel, and kills every sandbox by exit', async () => {
    const args = { ...exampleTask(), base_url: llm.url, model: 'scripted-model' };
    const cold = await server.callOk('run_rollout', { ...args, task_id: 'cold' });
    assert.equal(cold.warm_start, false);
    assert.equal(cold.reward, 1, JSON.stringify(cold.error));
    let warm: Record<string, any> = {};
    for (let attempt = 0; attempt < 60 && !warm.warm_start; attempt++) {
      await waitFor(() => standIn.sandboxes().some((s) => s.state === 'running' && s.metadata.label === 'warm'), 90_000, 'a warm sandbox');
      warm = await server.callOk('run_rollout', { ...args, task_id: `warm-${attempt}` });
    }
    assert.equal(warm.warm_start, true, 'a later rollout took the warm opencode');
    assert.equal(warm.reward, 1, JSON.stringify(warm.error));
    assert.deepEqual(
      warm.agent_events.map((e: { type: string }) => e.type),
      cold.agent_events.map((e: { type: string }) => e.type),
    );
    await server.close();
    assert.deepEqual(
      standIn.sandboxes().filter((s) => s.state === 'running'),
      [],
      'every sandbox, the refilled warm one too, killed by exit',
    );
  });
});
