// Turns, specs and results shaped like the runner's, for writing traces without running a rollout.
import type { ProxyTurn } from '../../src/core/proxy/types.js';
import { rolloutRequestSchema, type RolloutResult, type RolloutSpec } from '../../src/core/rollout/schema.js';

/** A spec as the schema makes it (its defaults, not a copy of them), with `overrides` on top. */
export function makeSpec(overrides: Partial<RolloutSpec> = {}): RolloutSpec {
  return { ...rolloutRequestSchema.parse({ instruction: 'write fizzbuzz.py', task_id: 'fixture-task' }), ...overrides };
}

/** A turn whose request carries `content` as its last message (make it large for a large turn). */
export function makeTurn(turn: number, content = `message ${turn}`): ProxyTurn {
  return {
    turn,
    timestamp: new Date(Date.UTC(2024, 0, 2, 3, 4, turn)).toISOString(),
    method: 'POST',
    path: '/v1/chat/completions',
    kind: 'agent',
    session_id: 'ses_1',
    stream: true,
    request: { model: 'm', messages: [{ role: 'user', content }], tools: [{ type: 'function', function: { name: 'write' } }] },
    injected: ['logprobs'],
    latency_s: 0.5,
    ttfb_s: 0.1,
    upstream_status: 200,
    upstream_error: null,
    response: { content: `answer ${turn}`, reasoning: '', tool_calls: [] },
    finish_reason: 'stop',
    usage: { prompt_tokens: 10, completion_tokens: 2 },
    completion_tokens: ['an', 'swer'],
    completion_token_ids: [11, 12],
    per_token_logps: [-0.1, -0.2],
    top_logprobs: [[{ token: 'an', logprob: -0.1 }], [{ token: 'swer', logprob: -0.2 }]],
    prompt_token_ids: [1, 2, 3],
    n_chunks: 4,
  };
}

export function makeResult(rolloutId: string, overrides: Partial<RolloutResult> = {}): RolloutResult {
  return {
    rollout_id: rolloutId,
    task_id: 'fixture-task',
    sandbox_id: 'sbx-1',
    warm_start: false,
    reward: 1,
    rewards: {},
    agent_exit_code: 0,
    agent_timed_out: false,
    budget_exhausted: null,
    wall_s: 1.5,
    timings: { agent: 1 },
    mode: 'transparent_proxy',
    endpoint: { name: 'custom', base_url: 'http://127.0.0.1:1/v1', model: 'm' },
    template: null,
    setup_results: [],
    verify_results: [],
    proxy_turns: [],
    agent_events: [],
    files: { 'fizzbuzz.py': 'print(1)\n' },
    files_extra: [],
    agent_log_tail: '',
    proxy_log_tail: '',
    error: null,
    error_kind: null,
    trace_uri: `opencode-env://traces/${rolloutId}`,
    ...overrides,
  };
}

export const FIXTURE_ENDPOINT = { name: 'custom', base_url: 'http://127.0.0.1:1/v1', model: 'm' };
