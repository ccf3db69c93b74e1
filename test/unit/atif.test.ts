// The ATIF export (src/core/export/atif.ts) on fixture turns: valid against the schema, steps in order, tool
// calls with the results the next request carried, metrics with token ids and logprobs, title calls left out.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { traceToAtif, type AtifTurn } from '../../src/core/export/atif.js';
import type { ProxyTurn } from '../../src/core/proxy/types.js';
import { atifProblems } from '../helpers/atif-validate.js';
import { makeResult, makeTurn } from '../helpers/trace-fixtures.js';

const AGENT = { name: 'opencode', version: '1.2.3' };
const SYSTEM = { role: 'system', content: 'You are opencode.' };
const USER = { role: 'user', content: [{ type: 'text', text: 'write fizzbuzz.py' }] };
const WRITE_CALL = { id: 'call_w', name: 'write', arguments: '{"filePath":"fizzbuzz.py","content":"print(1)"}' };
const BASH_CALL = { id: 'call_b', name: 'bash', arguments: '{"command":"python fizzbuzz.py"}' };

function turn(n: number, overrides: Partial<ProxyTurn>): ProxyTurn {
  return { ...makeTurn(n), ...overrides };
}

/** A rollout as opencode makes it: a title call, then write, then bash, then the final answer. */
function rolloutTurns(): ProxyTurn[] {
  const first = [SYSTEM, USER];
  const afterWrite = [
    ...first,
    { role: 'assistant', content: '', tool_calls: [] },
    { role: 'tool', tool_call_id: 'call_w', content: 'Wrote file' },
  ];
  const afterBash = [
    ...afterWrite,
    { role: 'assistant', content: 'Running it.' },
    { role: 'tool', tool_call_id: 'call_b', content: [{ type: 'text', text: '1\n' }] },
  ];
  return [
    turn(1, {
      kind: 'title',
      request: { model: 'm', messages: [{ role: 'user', content: 'title this' }] },
      response: { content: 'Fizzbuzz', reasoning: '', tool_calls: [] },
    }),
    turn(2, {
      request: { model: 'm', messages: first },
      response: { content: '', reasoning: 'I should write the file.', tool_calls: [WRITE_CALL] },
      usage: { prompt_tokens: 30, completion_tokens: 3, prompt_tokens_details: { cached_tokens: 10 } },
      prompt_token_ids: [1, 2, 3],
      completion_token_ids: [21, 22, 23],
      per_token_logps: [-0.5, -0.25, 0],
    }),
    turn(3, {
      request: { model: 'm', messages: afterWrite },
      response: { content: 'Running it.', reasoning: '', tool_calls: [BASH_CALL] },
      usage: { prompt_tokens: 40, completion_tokens: 2 },
      prompt_token_ids: [1, 2, 3, 21, 22, 23, 4],
      completion_token_ids: [31, 32],
      per_token_logps: [-1, null],
    }),
    turn(4, {
      request: { model: 'm', messages: afterBash },
      response: { content: 'Done.', reasoning: '', tool_calls: [] },
      usage: { prompt_tokens: 50, completion_tokens: 1 },
      completion_token_ids: [41],
      per_token_logps: [-0.1],
    }),
  ];
}

function exportRollout(turns: AtifTurn[] = rolloutTurns()) {
  return traceToAtif({ rollout_id: 'rollout-x', result: makeResult('rollout-x', { reward: 1 }), turns }, AGENT);
}

describe('ATIF export', () => {
  it('is a valid ATIF v1.4 trajectory', () => {
    const trajectory = exportRollout();
    assert.deepEqual(atifProblems(trajectory), [], 'valid against the schema and the cross-field rules');
    assert.equal(trajectory.schema_version, 'ATIF-v1.4');
    assert.equal(trajectory.session_id, 'rollout-x');
    assert.deepEqual({ ...trajectory.agent, extra: undefined }, { name: 'opencode', version: '1.2.3', model_name: 'm', extra: undefined });
  });

  it('gives the system and user prompt, then one agent step per agent call; the title call is left out', () => {
    const { steps } = exportRollout();
    assert.deepEqual(
      steps.map((s) => [s.step_id, s.source, s.message]),
      [
        [1, 'system', 'You are opencode.'],
        [2, 'user', 'write fizzbuzz.py'],
        [3, 'agent', ''],
        [4, 'agent', 'Running it.'],
        [5, 'agent', 'Done.'],
      ],
    );
    assert.ok(!steps.some((s) => s.message === 'Fizzbuzz'), 'the title answer is not a step');
    assert.equal(steps[2]!.reasoning_content, 'I should write the file.');
    assert.equal(steps[2]!.timestamp, makeTurn(2).timestamp);
  });

  it('gives each tool call with its result from the next request', () => {
    const { steps } = exportRollout();
    assert.deepEqual(steps[2]!.tool_calls, [
      { tool_call_id: 'call_w', function_name: 'write', arguments: { filePath: 'fizzbuzz.py', content: 'print(1)' } },
    ]);
    assert.deepEqual(steps[2]!.observation, { results: [{ source_call_id: 'call_w', content: 'Wrote file' }] });
    assert.deepEqual(steps[3]!.observation, { results: [{ source_call_id: 'call_b', content: '1\n' }] });
    assert.equal(steps[4]!.tool_calls, undefined, 'the final answer calls no tool');
    assert.equal(steps[4]!.observation, undefined, 'and observes nothing');
  });

  it('gives per-step metrics with token ids and logprobs, and the totals in final_metrics', () => {
    const trajectory = exportRollout();
    const [write, bash, final] = trajectory.steps.slice(2);
    assert.deepEqual(write!.metrics, {
      prompt_tokens: 30,
      completion_tokens: 3,
      cached_tokens: 10,
      prompt_token_ids: [1, 2, 3],
      completion_token_ids: [21, 22, 23],
      logprobs: [-0.5, -0.25, 0],
    });
    // A logprob the upstream did not give would misalign the list: it is left out, and counted.
    assert.equal(bash!.metrics!.logprobs, undefined, 'partial logprobs are left out');
    assert.deepEqual(bash!.metrics!.extra, { logprobs_missing: 1 });
    assert.deepEqual(bash!.metrics!.completion_token_ids, [31, 32]);
    assert.deepEqual(final!.metrics!.completion_token_ids, [41]);
    assert.deepEqual(
      { ...trajectory.final_metrics, extra: undefined },
      { total_prompt_tokens: 120, total_completion_tokens: 6, total_cached_tokens: 10, total_steps: 5, extra: undefined },
    );
    assert.deepEqual(trajectory.final_metrics.extra, { agent_steps: 3, left_out_llm_calls: 1 });
    assert.equal(trajectory.extra!.reward, 1);
  });

  it('keeps malformed tool arguments beside an empty object, and names calls without an id', () => {
    const turns = rolloutTurns();
    turns[1]!.response.tool_calls = [{ id: null, name: 'write', arguments: '{"filePath": "a' }];
    const trajectory = exportRollout(turns);
    assert.deepEqual(atifProblems(trajectory), [], 'still valid');
    const step = trajectory.steps[2]!;
    assert.deepEqual(step.tool_calls, [{ tool_call_id: 'call_2_0', function_name: 'write', arguments: {} }]);
    assert.deepEqual(step.extra!.unparsed_tool_arguments, { call_2_0: '{"filePath": "a' });
  });

  it('matches tool results within their opencode session when sessions interleave', () => {
    const main1 = turn(1, {
      session_id: 'ses_main',
      request: { model: 'm', messages: [USER] },
      response: { content: '', reasoning: '', tool_calls: [{ id: 'call_t', name: 'task', arguments: '{}' }] },
    });
    const sub1 = turn(2, {
      session_id: 'ses_sub',
      request: { model: 'm', messages: [{ role: 'user', content: 'subtask' }] },
      response: { content: 'sub done', reasoning: '', tool_calls: [] },
    });
    const main2 = turn(3, {
      session_id: 'ses_main',
      request: {
        model: 'm',
        messages: [USER, { role: 'assistant', content: '' }, { role: 'tool', tool_call_id: 'call_t', content: 'sub done' }],
      },
      response: { content: 'All done.', reasoning: '', tool_calls: [] },
    });
    const trajectory = exportRollout([main1, sub1, main2]);
    assert.deepEqual(atifProblems(trajectory), [], 'valid');
    assert.deepEqual(
      trajectory.steps.map((s) => [s.source, s.message]),
      [
        ['user', 'write fizzbuzz.py'],
        ['agent', ''],
        ['user', 'subtask'],
        ['agent', 'sub done'],
        ['agent', 'All done.'],
      ],
    );
    assert.deepEqual(trajectory.steps[1]!.observation, { results: [{ source_call_id: 'call_t', content: 'sub done' }] });
    assert.deepEqual(trajectory.extra!.opencode_sessions, ['ses_main', 'ses_sub']);
  });

  it('the schema refuses what ATIF does not allow', () => {
    const trajectory = exportRollout() as any;
    assert.notDeepEqual(atifProblems({ ...trajectory, agent: { name: 'opencode' } }), [], 'agent.version is required');
    const userWithMetrics = structuredClone(trajectory);
    userWithMetrics.steps[1].metrics = { prompt_tokens: 1 };
    assert.notDeepEqual(atifProblems(userWithMetrics), [], 'metrics only on agent steps');
    const badRef = structuredClone(trajectory);
    badRef.steps[2].observation.results[0].source_call_id = 'call_nope';
    assert.notDeepEqual(atifProblems(badRef), [], 'an observation names a tool call of its step');
    const renumbered = structuredClone(trajectory);
    renumbered.steps[0].step_id = 0;
    assert.notDeepEqual(atifProblems(renumbered), [], 'step ids start at 1');
  });
});
