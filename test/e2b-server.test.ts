// What the server promises on E2B beyond the conformance suite, through the real SDK against the offline stand-in: every
// sandbox tagged and given a lifetime, killed at a normal end, a cancel and shutdown; the LLM key never sent into a
// sandbox; a template without opencode, a sandbox that dies mid-rollout, and a bad E2B key each give a clear error.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NPM_CACHE_TEMPLATE, serverEnv, startE2bStandIn, type E2bStandIn } from './helpers/e2b-standin/index.js';
import { exampleScript, exampleTask, startScripted, type ScriptedLlm } from './helpers/scripted.js';
import { repoRoot, startServer, storedTraces, waitFor, type RunningServer } from './helpers/server.js';

/** Whether `secret` appears in `value`, as text or inside any base64 string (envd carries stdin and output as base64). */
function mentions(value: unknown, secret: string): boolean {
  if (typeof value === 'string') return value.includes(secret) || Buffer.from(value, 'base64').toString('latin1').includes(secret);
  if (value && typeof value === 'object') return Object.values(value).some((v) => mentions(v, secret));
  return false;
}

describe('the server on E2B (stand-in)', () => {
  let standIn: E2bStandIn;
  let server: RunningServer;
  let llm: ScriptedLlm;

  before(async () => {
    standIn = await startE2bStandIn();
    const secret = 'sk-e2b-test-KEY-0123456789';
    [server, llm] = await Promise.all([
      startServer({ env: serverEnv(standIn) }),
      startScripted(exampleScript('script.json'), { apiKey: secret }),
    ]);
  });
  after(async () => {
    await Promise.all([server.close(), llm.close()]);
    await standIn.close();
  });

  it('tags every sandbox, gives a rollout its phase budget as lifetime, kills it at the end, and never sends the key in', async () => {
    const secret = 'sk-e2b-test-KEY-0123456789';
    const r = await server.callOk('run_rollout', { ...exampleTask(), base_url: llm.url, model: 'scripted-model', api_key: secret });
    assert.equal(r.reward, 1, `the key reached the model, which refuses requests without it: ${r.error}`);
    const made = standIn.sandboxes().find((s) => s.sandboxId === r.sandbox_id);
    assert.ok(made, 'the stand-in made the rollout sandbox');
    assert.equal(made.templateId, 'opencode-env', 'the default template');
    assert.equal(made.metadata.app, 'opencode-env');
    assert.equal(made.metadata.rollout_id, r.rollout_id);
    assert.equal(made.metadata.task_id, 'fizzbuzz');
    assert.match(made.metadata.serverInstance ?? '', new RegExp(`:${server.pid}:`), 'the server instance names its pid');
    // agent 600 s + one verifier 120 s + 300 s slack, or more once renewed while work went on.
    assert.ok(made.timeoutS >= 1020, `lifetime ${made.timeoutS} s`);
    assert.equal(made.state, 'killed');
    assert.equal(made.endedBy, 'api', 'killed by the server at the end, not left to its lifetime');
    const sent = standIn.requests.filter((q) => q.headers['e2b-sandbox-id'] === r.sandbox_id || q.path.includes(r.sandbox_id));
    assert.ok(sent.length > 5, `requests for the sandbox were recorded (${sent.length})`);
    assert.ok(!sent.some((q) => mentions(q.body, secret) || mentions(q.headers, secret)), 'the LLM key was never sent toward the sandbox');
  });

  it('tags the episode sandbox with the episode id', async () => {
    await server.callOk('execute_python', { code: 'x = 1' });
    const state = await server.callOk('get_state');
    const made = standIn.sandboxes().find((s) => s.sandboxId === state.sandbox_id);
    assert.equal(made?.metadata.episode_id, state.episode_id);
    assert.equal(made?.state, 'running');
  });

  it('a cancelled rollout kills its sandbox and stores its trace', async () => {
    const stalled = await startScripted({ turns: [{ text: 'thinking very slowly', delay_ms: 120_000 }] });
    try {
      const controller = new AbortController();
      const call = server.call(
        'run_rollout',
        { ...exampleTask(), task_id: 'to-cancel', base_url: stalled.url, model: 'scripted-model' },
        { signal: controller.signal },
      );
      await waitFor(() => stalled.requests.some((q) => Array.isArray(q.body?.tools)), 60_000, 'the agent to call the model');
      const sandbox = standIn.sandboxes().find((s) => s.metadata.task_id === 'to-cancel');
      assert.equal(sandbox?.state, 'running');
      controller.abort();
      await assert.rejects(call);
      await waitFor(() => standIn.sandboxes().find((s) => s.sandboxId === sandbox.sandboxId)?.state === 'killed', 15_000, 'the kill');
      assert.equal(standIn.sandboxes().find((s) => s.sandboxId === sandbox.sandboxId)?.endedBy, 'api');
      await waitFor(() => storedTraces(server).some((t) => t.result.task_id === 'to-cancel'), 10_000, 'the trace');
      assert.equal(storedTraces(server).find((t) => t.result.task_id === 'to-cancel')?.result.error_kind, 'cancelled');
    } finally {
      await stalled.close();
    }
  });

  it('a sandbox that dies mid-rollout is an infrastructure error (reward null) that says so', async () => {
    const stalled = await startScripted({ turns: [{ text: 'thinking very slowly', delay_ms: 120_000 }] });
    try {
      const call = server.callOk('run_rollout', { ...exampleTask(), task_id: 'to-die', base_url: stalled.url, model: 'scripted-model' });
      await waitFor(() => stalled.requests.some((q) => Array.isArray(q.body?.tools)), 60_000, 'the agent to call the model');
      const sandbox = standIn.sandboxes().find((s) => s.metadata.task_id === 'to-die');
      await standIn.killSandbox(sandbox!.sandboxId);
      const r = await call;
      assert.equal(r.reward, null);
      assert.equal(r.error_kind, 'sandbox', r.error);
      assert.match(r.error, /sandbox/i);
    } finally {
      await stalled.close();
    }
  });

  it('a template without opencode that cannot install it fails clearly, naming the way out', async () => {
    const r = await server.callOk('run_rollout', {
      ...exampleTask(),
      template: 'base',
      base_url: llm.url,
      model: 'scripted-model',
      api_key: 'k',
    });
    assert.equal(r.reward, null);
    assert.equal(r.error_kind, 'sandbox');
    assert.match(r.error, /opencode is not installed in template base/);
    assert.match(r.error, /opencode-env template build/);
    assert.equal(r.timings.agent, undefined, 'the agent never started');
  });

  it('installs the pinned opencode in a template without it, and times the install', async () => {
    const r = await server.callOk('run_rollout', {
      ...exampleTask(),
      template: NPM_CACHE_TEMPLATE,
      base_url: llm.url,
      model: 'scripted-model',
      api_key: 'sk-e2b-test-KEY-0123456789',
    });
    assert.equal(r.reward, 1, r.error);
    assert.equal(typeof r.timings.install, 'number', 'the install is timed');
    const pinned = `opencode-ai@${JSON.parse(readFileSync(path.join(repoRoot, 'node_modules/opencode-ai/package.json'), 'utf8')).version}`;
    const started = standIn.requests.filter((q) => q.path.endsWith('/Start') && q.headers['e2b-sandbox-id'] === r.sandbox_id);
    assert.ok(
      started.some((q) => JSON.stringify(q.body).includes(pinned)),
      `npm was asked for ${pinned}, the version this server runs`,
    );
  });

  it('kills the episode sandbox when the server exits', async () => {
    const state = await server.callOk('get_state');
    assert.equal(standIn.sandboxes().find((s) => s.sandboxId === state.sandbox_id)?.state, 'running');
    await server.close();
    const left = standIn.sandboxes().filter((s) => s.state === 'running');
    assert.deepEqual(
      left.map((s) => s.sandboxId),
      [],
      'nothing left running',
    );
    assert.equal(standIn.sandboxes().find((s) => s.sandboxId === state.sandbox_id)?.endedBy, 'api');
  });
});

describe('a bad E2B key', () => {
  it('gives a rollout a sandbox error that names E2B_API_KEY, and execute_python a clear tool error', async () => {
    const standIn = await startE2bStandIn();
    const server = await startServer({ env: serverEnv(standIn, { E2B_API_KEY: 'e2b_wrong_key' }) });
    const llm = await startScripted(exampleScript('script.json'));
    try {
      const r = await server.callOk('run_rollout', { ...exampleTask(), base_url: llm.url, model: 'scripted-model' });
      assert.equal(r.reward, null);
      assert.equal(r.error_kind, 'sandbox');
      assert.match(r.error, /E2B_API_KEY/);
      const py = await server.call('execute_python', { code: '1' });
      assert.equal(py.isError, true);
      assert.match(JSON.stringify(py.content), /E2B_API_KEY/);
    } finally {
      await Promise.all([server.close(), llm.close()]);
      await standIn.close();
    }
  });
});
