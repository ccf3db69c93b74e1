import { waitFor } from '../../test/helpers/server.js';
import { IDLE_AGENT, STALLED_AGENT } from '../agent.js';
import type { Case, CaseContext } from '../harness.js';
import { markedProcesses } from '../leftovers.js';
import { resultText } from '../server.js';
import { awaitTraces } from '../traces.js';
import { closedPort } from '../upstreams.js';

interface Rollout {
  r: Record<string, any>;
  seconds: number;
}

async function rollout(t: CaseContext, args: Record<string, unknown>, env: Record<string, string> = {}): Promise<Rollout> {
  const server = await t.server({ env });
  const started = performance.now();
  const r = await server.callOk('run_rollout', { instruction: 'do the task', model: 'scripted-model', ...args });
  return { r, seconds: (performance.now() - started) / 1000 };
}

const brief = ({ r, seconds }: Rollout) =>
  `reward ${r.reward}, error_kind ${r.error_kind}, "${String(r.error).slice(0, 70)}", ${seconds.toFixed(1)} s`;

/** The LLM endpoint misbehaves: the rollout must give reward null with error_kind upstream, in bounded time. */
function upstreamCase(id: string, title: string, sent: string, endpoint: (t: CaseContext) => Promise<string>): Case {
  return {
    id,
    title,
    sent,
    async run(t) {
      const result = await rollout(t, { verify: ['true'], base_url: await endpoint(t) });
      t.expect(
        result.r.reward === null && result.r.error_kind === 'upstream',
        `reward ${result.r.reward}, error_kind ${result.r.error_kind}`,
      );
      t.expect(result.seconds < 60, `took ${result.seconds.toFixed(0)} s`);
      return brief(result);
    },
  };
}

export const failureCases: Case[] = [
  {
    id: '11a',
    title: 'hanging verifier',
    sent: 'verify ["sleep 1000"], verify_timeout_s 2',
    async run(t) {
      const llm = await t.scripted(IDLE_AGENT);
      const result = await rollout(t, { verify: ['sleep 1000'], verify_timeout_s: 2, base_url: llm.url });
      t.expect(
        result.r.reward === null && result.r.error_kind === 'verifier',
        `reward ${result.r.reward}, error_kind ${result.r.error_kind}`,
      );
      t.expect(result.seconds < 30, `took ${result.seconds.toFixed(0)} s`);
      return brief(result);
    },
  },
  {
    id: '11b',
    title: 'verifier forks a daemon',
    sent: 'verify ["(sleep 1000 &); setsid nohup sleep 1001 >/dev/null 2>&1 & true"], verify_timeout_s 20',
    async run(t) {
      const llm = await t.scripted(IDLE_AGENT);
      const result = await rollout(t, {
        verify: ['(sleep 1000 &); setsid nohup sleep 1001 >/dev/null 2>&1 & true'],
        verify_timeout_s: 20,
        base_url: llm.url,
      });
      t.expect(result.seconds < 30, `took ${result.seconds.toFixed(0)} s`);
      // The server is still up: the rollout's sandbox alone must be gone.
      let left = await markedProcesses(new Set([String(result.r.sandbox_id)]));
      for (let i = 0; i < 25 && left.length > 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        left = await markedProcesses(new Set([String(result.r.sandbox_id)]));
      }
      t.expect(left.length === 0, `still running after the rollout: ${left.map((p) => p.command).join('; ')}`);
      return `${brief(result)}; ${left.length} processes left`;
    },
  },
  upstreamCase('12a', 'LLM endpoint down', 'base_url = a closed port', async () => `http://127.0.0.1:${await closedPort()}/v1`),
  upstreamCase('12b', 'LLM endpoint answers 500', 'base_url = a model answering HTTP 500 to everything', async (t) => {
    return (await t.scripted({ turns: [{ text: 'unused' }], error: { status: 500, message: 'model crashed' } })).url;
  }),
  upstreamCase('12c', 'LLM endpoint sends malformed SSE', 'base_url = a model whose every stream is cut mid-JSON', async (t) => {
    return (await t.scripted({ turns: [{ text: 'broken', malformed: true }] })).url;
  }),
  {
    id: '12d',
    title: 'LLM endpoint stalls mid-stream',
    sent: 'a model that sends its first chunk, then one token a minute; agent_timeout_s 8',
    async run(t) {
      const llm = await t.scripted({ turns: [{ text: 'one two three four five', chunk_delay_ms: 60_000 }] });
      const result = await rollout(t, { verify: ['true'], agent_timeout_s: 8, base_url: llm.url });
      const { r } = result;
      const upstream = r.reward === null && r.error_kind === 'upstream';
      const agentTimeout = r.agent_timed_out === true && r.error_kind === null && typeof r.reward === 'number';
      t.expect(upstream || agentTimeout, `neither an upstream failure nor an agent timeout: ${brief(result)}`);
      t.expect(result.seconds < 40, `took ${result.seconds.toFixed(0)} s`);
      return `${brief(result)}, agent_timed_out ${r.agent_timed_out}`;
    },
  },
  {
    id: '13',
    title: 'agent binary missing',
    sent: 'OPENCODE_ENV_OPENCODE_BIN=/nonexistent; run_rollout',
    async run(t) {
      const llm = await t.scripted(IDLE_AGENT);
      const server = await t.server({ env: { OPENCODE_ENV_OPENCODE_BIN: '/nonexistent' } });
      const started = performance.now();
      const result = await server.call('run_rollout', { instruction: 'x', verify: ['true'], base_url: llm.url, model: 'scripted-model' });
      const seconds = (performance.now() - started) / 1000;
      const r = (result.structuredContent ?? {}) as Record<string, any>;
      const text = result.isError ? resultText(result) : String(r.error);
      t.expect(result.isError || (r.reward === null && r.error_kind !== null), `not an error: reward ${r.reward}`);
      t.expect(/nonexistent/.test(text), `the error does not name the configured binary: ${text.slice(0, 160)}`);
      t.expect(seconds < 30, `took ${seconds.toFixed(0)} s`);
      return `${result.isError ? 'isError' : `reward ${r.reward}, error_kind ${r.error_kind}`}: "${text.slice(0, 90)}", ${seconds.toFixed(1)} s`;
    },
  },
  {
    id: '14',
    title: 'client cancels mid-rollout',
    sent: 'run_rollout against a model that never answers, aborted (AbortSignal) once the agent is waiting',
    async run(t) {
      const llm = await t.scripted(STALLED_AGENT);
      const server = await t.server();
      const controller = new AbortController();
      const call = server.call(
        'run_rollout',
        { instruction: 'x', verify: ['true'], base_url: llm.url, model: 'scripted-model' },
        { signal: controller.signal },
      );
      await waitFor(() => llm.requests.some((q) => Array.isArray(q.body?.tools)), 90_000, 'the agent to call the model');
      controller.abort();
      const outcome = await call.then(
        () => 'resolved',
        (error: Error) => `rejected (${error.message.slice(0, 40)})`,
      );
      const started = performance.now();
      await server.callOk('get_state', {}, { timeoutMs: 10_000 });
      const answerS = (performance.now() - started) / 1000;
      // Sandbox processes only: the server may keep helpers of its own (a reaper, say).
      let running = await markedProcesses(server.workspace.sandboxIds);
      for (let i = 0; i < 75 && running.length > 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        running = await markedProcesses(server.workspace.sandboxIds);
      }
      t.expect(running.length === 0, `still running 15 s after the cancel: ${running.map((p) => p.command).join('; ')}`);
      // The cancelled rollout stores its partial trace as it winds down.
      const traces = await awaitTraces(server, (found) => found.length > 0);
      const state = await server.callOk('get_state');
      t.expect(state.rollouts_cancelled === 1, `rollouts_cancelled ${state.rollouts_cancelled}`);
      t.expect(
        traces.length === 1 && traces[0]!.errorKind === 'cancelled',
        `traces: ${traces.map((x) => x.errorKind).join(', ') || 'none'}`,
      );
      return `call ${outcome}; get_state answered in ${answerS.toFixed(1)} s; ${running.length} processes left; rollouts_cancelled ${state.rollouts_cancelled}, ${traces.length} trace (${traces[0]?.errorKind ?? '-'})`;
    },
  },
];
