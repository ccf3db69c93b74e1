import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { exampleScript, exampleTask, startScripted, type ScriptedLlm } from './helpers/scripted.js';
import { sandboxDescendants, startServer, storedTraces, waitFor, type RunningServer } from './helpers/server.js';

async function closedPort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

// Infrastructure failures must surface as reward null plus an error, never as a silent 0.
describe('run_rollout when things go wrong', () => {
  let server: RunningServer;
  let llm: ScriptedLlm;
  before(async () => {
    [server, llm] = await Promise.all([startServer(), startScripted(exampleScript('script.json'))]);
  });
  after(async () => {
    await Promise.all([server.close(), llm.close()]);
  });

  it('an upstream answering 500 gives reward null and an error, after exactly 3 attempts, each recorded', async () => {
    const down = await startScripted({ turns: [{ text: 'unused' }], error: { status: 500, message: 'model crashed' } });
    try {
      const r = await server.callOk('run_rollout', { ...exampleTask(), base_url: down.url, model: 'scripted-model' });
      assert.equal(r.reward, null);
      assert.equal(r.error_kind, 'upstream');
      assert.match(r.error, /LLM endpoint unavailable: the LLM endpoint failed 3 times in a row \(last: HTTP 500\)/);
      const attempts = down.requests.filter((q) => q.path === '/v1/chat/completions').length;
      assert.equal(attempts, 3, 'the proxy gives up instead of letting opencode retry for minutes');
      assert.equal(r.proxy_turns.length, 3);
      for (const turn of r.proxy_turns) {
        assert.equal(turn.upstream_status, 500);
        assert.equal(turn.upstream_error.type, 'http');
        assert.match(turn.upstream_error.body, /model crashed/);
      }
      assert.deepEqual(r.verify_results, [], 'no verifier runs after an infrastructure failure');
    } finally {
      await down.close();
    }
  });

  it('an unreachable upstream gives reward null and an error', async () => {
    const port = await closedPort();
    const r = await server.callOk('run_rollout', { ...exampleTask(), base_url: `http://127.0.0.1:${port}/v1`, model: 'scripted-model' });
    assert.equal(r.reward, null);
    assert.equal(r.error_kind, 'upstream');
    assert.match(r.error, /LLM endpoint unavailable/);
    assert.ok(r.proxy_turns.every((t: any) => t.upstream_status === null && t.upstream_error.type === 'connection'));
  });

  it('a hanging verifier is killed at verify_timeout_s: reward null, the timeout recorded', async () => {
    const r = await server.callOk('run_rollout', {
      ...exampleTask(),
      test_script: undefined,
      verify: ['test -f fizzbuzz.py', 'sleep 60'],
      verify_timeout_s: 1,
      base_url: llm.url,
      model: 'scripted-model',
    });
    assert.equal(r.reward, null);
    assert.equal(r.error_kind, 'verifier');
    assert.match(r.error, /verifier command 2 was killed after verify_timeout_s = 1 s: sleep 60/);
    assert.equal(r.verify_results[1].timed_out, true);
    assert.equal(r.verify_results[1].exit_code, null);
    assert.equal(r.verify_results[0].exit_code, 0);
  });

  it('a failing setup command stops the rollout before the agent runs', async () => {
    const before = llm.requests.length;
    const r = await server.callOk('run_rollout', {
      ...exampleTask(),
      setup: ['echo preparing', 'echo broken >&2; exit 4'],
      base_url: llm.url,
      model: 'scripted-model',
    });
    assert.equal(r.reward, null);
    assert.equal(r.error_kind, 'setup');
    assert.match(r.error, /setup command 2 failed with exit code 4: echo broken >&2; exit 4\nbroken/);
    assert.equal(r.agent_exit_code, null);
    assert.equal(llm.requests.length, before, 'the agent never called the model');
  });

  it('a reward file the agent planted is discarded before the verifier runs', async () => {
    const cheater = await startScripted({
      turns: [
        {
          tool_calls: [
            {
              name: 'bash',
              arguments: { command: 'mkdir -p ~/logs/verifier && echo 1.0 > ~/logs/verifier/reward.txt', description: 'cheat' },
            },
          ],
        },
        { text: 'Done.' },
      ],
    });
    try {
      const r = await server.callOk('run_rollout', { ...exampleTask(), base_url: cheater.url, model: 'scripted-model' });
      assert.equal(r.error, null);
      assert.equal(r.reward, 0, 'fizzbuzz.py is missing, whatever the agent wrote into the verifier directory');
    } finally {
      await cheater.close();
    }
  });

  it('kills the agent at agent_timeout_s and still verifies what it left', async () => {
    const slow = await startScripted({
      turns: [
        { tool_calls: [{ name: 'write', arguments: { filePath: '{{workdir}}/partial.txt', content: 'partial\n' } }] },
        { tool_calls: [{ name: 'bash', arguments: { command: 'sleep 120', description: 'stall', timeout: 600000 } }] },
        { text: 'never reached' },
      ],
    });
    try {
      const r = await server.callOk('run_rollout', {
        instruction: 'work slowly',
        verify: ['test -f partial.txt'],
        agent_timeout_s: 15,
        base_url: slow.url,
        model: 'scripted-model',
      });
      assert.equal(r.agent_timed_out, true);
      assert.equal(r.agent_exit_code, null);
      assert.equal(r.error, null, 'a slow agent is the agent’s failure, not the infrastructure’s');
      assert.equal(r.error_kind, null);
      assert.equal(r.reward, 1);
      const agentSteps = slow.requests.filter((q) => q.path === '/v1/chat/completions' && Array.isArray(q.body?.tools));
      assert.ok(
        agentSteps.length <= 2,
        `killed by the stalled step at the latest: the model was never asked for a third (${agentSteps.length})`,
      );
    } finally {
      await slow.close();
    }
  });

  it('a budget of LLM calls ends the run with a final answer; the work is still verified and the result says so', async () => {
    const r = await server.callOk('run_rollout', { ...exampleTask(), base_url: llm.url, model: 'scripted-model', max_llm_calls: 1 });
    assert.equal(r.error, null, "a budget is the policy's limit, not an infrastructure failure");
    assert.equal(r.budget_exhausted, 'max_llm_calls');
    assert.equal(r.agent_exit_code, 0, 'opencode ended normally on the final answer');
    assert.equal(r.proxy_turns.filter((t: any) => t.kind === 'agent').length, 1, 'only the budgeted call reached the model');
    assert.equal(r.reward, 1, 'the one call wrote a correct fizzbuzz.py, which the verifier judged');
    assert.match(r.proxy_log_tail, /max_llm_calls reached/);
  });

  it('a token budget ends the run once the usage reaches it; black_box mode, which reads no usage, refuses it', async () => {
    const r = await server.callOk('run_rollout', { ...exampleTask(), base_url: llm.url, model: 'scripted-model', max_total_tokens: 1 });
    assert.equal(r.budget_exhausted, 'max_total_tokens');
    assert.equal(r.proxy_turns.filter((t: any) => t.kind === 'agent').length, 1);
    const refused = await server.call('run_rollout', {
      ...exampleTask(),
      base_url: llm.url,
      model: 'scripted-model',
      mode: 'black_box',
      max_total_tokens: 10,
    });
    assert.equal(refused.isError, true);
    assert.match(JSON.stringify(refused.content), /max_total_tokens needs mode transparent_proxy/);
  });

  it('never lets the API key into the trace, the result or the logs', async () => {
    const secret = 'sk-test-0123456789abcdefSECRET';
    const guarded = await startScripted(exampleScript('script.json'), { apiKey: secret });
    try {
      const result = await server.call('run_rollout', {
        ...exampleTask(),
        base_url: guarded.url,
        model: 'scripted-model',
        api_key: secret,
      });
      const r = result.structuredContent as Record<string, any>;
      assert.equal(r.reward, 1, 'the key reached the model (it rejects requests without it)');
      const everything = [JSON.stringify(result), server.stderr(), ...storedTraces(server).map((t) => JSON.stringify(t))];
      for (const text of everything) assert.ok(!text.includes(secret), 'the key must not appear');
      const agentRequests = guarded.requests.filter((q) => q.path === '/v1/chat/completions');
      assert.ok(agentRequests.every((q) => q.headers.authorization === '[present]'));
    } finally {
      await guarded.close();
    }
  });

  it('cancelling a rollout kills the agent and its sandbox, and stores a partial trace', async () => {
    const stalled = await startScripted({ turns: [{ text: 'thinking very slowly', delay_ms: 120_000 }] });
    try {
      const controller = new AbortController();
      const call = server.call(
        'run_rollout',
        { ...exampleTask(), task_id: 'to-cancel', base_url: stalled.url, model: 'scripted-model' },
        { signal: controller.signal },
      );
      await waitFor(
        () => stalled.requests.some((q) => q.path === '/v1/chat/completions' && Array.isArray(q.body?.tools)),
        60_000,
        'the agent to call the model',
      );
      const running = await sandboxDescendants(server.pid);
      assert.ok(running.length > 2, 'the agent is running');
      controller.abort();
      await assert.rejects(call);
      await waitFor(async () => (await sandboxDescendants(server.pid)).length === 0, 15_000, 'every process of the rollout to end');
      await waitFor(() => readdirSync(server.sandboxRoot).length === 0, 10_000, 'the sandbox directory to be removed');
      await waitFor(() => storedTraces(server).some((t) => t.result.task_id === 'to-cancel'), 10_000, 'the partial trace');
      const trace = storedTraces(server).find((t) => t.result.task_id === 'to-cancel')!;
      assert.equal(trace.result.error, 'cancelled');
      assert.equal(trace.result.error_kind, 'cancelled');
      assert.equal(trace.result.reward, null);
      const state = await server.callOk('get_state');
      assert.equal(state.rollouts_cancelled, 1, 'counted apart from completed rollouts');
      assert.equal(state.last_task_id === 'to-cancel', false);
    } finally {
      await stalled.close();
    }
  });
});
