// The token-faithful merge (src/core/export/token-sequences.ts) against known answers, and the scripted model's
// toy chat template that makes a faithful conversation's prompts extend each other token for token.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { groupIdFor, mergeRolloutTurns, type MergeableTurn, type TokenSequence } from '../../src/core/export/token-sequences.js';
import { chatTemplateTokens, promptTokenIds, SPECIAL_TOKENS, tokenize, type TemplateMessage } from '../../src/scripted-llm/fake-tokens.js';

const META = { rollout_id: 'rollout-1', task_id: 'task-a', group_id: 'task-a', reward: 1 };

function turn(n: number, prompt: number[] | null, completion: number[], overrides: Partial<MergeableTurn> = {}): MergeableTurn {
  return {
    turn: n,
    kind: 'agent',
    session_id: 'ses_1',
    upstream_status: 200,
    upstream_error: null,
    response: { content: 'x', reasoning: '', tool_calls: [] },
    prompt_token_ids: prompt,
    completion_token_ids: completion,
    // Logprob of token id t: -t/100, so alignment is visible.
    per_token_logps: completion.map((t) => -t / 100),
    ...overrides,
  };
}

function assertAligned(sequence: TokenSequence): void {
  assert.equal(sequence.loss_mask.length, sequence.response_ids.length, 'one mask per response token');
  assert.equal(sequence.response_logprobs.length, sequence.response_ids.length, 'one logprob per response token');
  sequence.response_ids.forEach((id, i) => {
    const expected = sequence.loss_mask[i] === 1 ? -id / 100 : 0;
    assert.equal(sequence.response_logprobs[i], expected, `logprob of response token ${i} (mask ${sequence.loss_mask[i]})`);
  });
}

describe('mergeRolloutTurns', () => {
  it('merges a faithful 3-turn session into one sequence with known ids, masks and logprobs', () => {
    // prompt 1 = [1 2 3]; completion 1 = [10 11]; the next prompt adds [90 4] (end of turn, tool result), and so on.
    const turns = [
      turn(2, [1, 2, 3], [10, 11]),
      turn(3, [1, 2, 3, 10, 11, 90, 4], [12]),
      turn(4, [1, 2, 3, 10, 11, 90, 4, 12, 90, 5, 6], [13, 14]),
    ];
    const { sequences, report } = mergeRolloutTurns(turns, META);
    assert.deepEqual(report, { rollout_id: 'rollout-1', sequences: 1, prefix_breaks: 0, flagged: null });
    assert.equal(sequences.length, 1);
    const [s] = sequences as [TokenSequence];
    assert.deepEqual(s.prompt_ids, [1, 2, 3]);
    assert.deepEqual(s.response_ids, [10, 11, 90, 4, 12, 90, 5, 6, 13, 14]);
    assert.deepEqual(s.loss_mask, [1, 1, 0, 0, 1, 0, 0, 0, 1, 1]);
    assert.deepEqual(s.response_logprobs, [-0.1, -0.11, 0, 0, -0.12, 0, 0, 0, -0.13, -0.14]);
    assertAligned(s);
    assert.deepEqual([...s.prompt_ids, ...s.response_ids], [...turns[2]!.prompt_token_ids!, 13, 14], 'the last prompt + completion');
    assert.deepEqual(
      { reward: s.reward, rollout_id: s.rollout_id, task_id: s.task_id, group_id: s.group_id, session_id: s.session_id, turns: s.turns },
      { reward: 1, rollout_id: 'rollout-1', task_id: 'task-a', group_id: 'task-a', session_id: 'ses_1', turns: [2, 3, 4] },
    );
  });

  it('starts a new sequence at a prefix break (history rewritten) and counts it', () => {
    const turns = [
      turn(1, [1, 2], [10]),
      turn(2, [1, 2, 10, 90, 3], [11]),
      // Compaction: the history is replaced by a summary, so this prompt does not start with [1 2 10 90 3 11].
      turn(3, [1, 77, 90, 5], [12]),
      turn(4, [1, 77, 90, 5, 12, 90, 6], [13]),
    ];
    const { sequences, report } = mergeRolloutTurns(turns, META);
    assert.equal(report.prefix_breaks, 1);
    assert.equal(report.sequences, 2);
    assert.deepEqual(
      sequences.map((s) => [s.prompt_ids, s.response_ids, s.loss_mask, s.turns]),
      [
        [
          [1, 2],
          [10, 90, 3, 11],
          [1, 0, 0, 1],
          [1, 2],
        ],
        [
          [1, 77, 90, 5],
          [12, 90, 6, 13],
          [1, 0, 0, 1],
          [3, 4],
        ],
      ],
    );
    for (const s of sequences) assertAligned(s);
  });

  it('counts a prompt that drops the previous completion as a break, even when it starts with the previous prompt', () => {
    const { sequences, report } = mergeRolloutTurns([turn(1, [1, 2], [10, 11]), turn(2, [1, 2, 10, 90], [12])], META);
    assert.equal(report.prefix_breaks, 1, 'the second prompt lost token 11');
    assert.equal(sequences.length, 2);
  });

  it('merges each session on its own, in order of first appearance', () => {
    const turns = [
      turn(1, [1], [10]),
      turn(2, [50], [60], { session_id: 'ses_sub' }),
      turn(3, [1, 10, 2], [11]),
      turn(4, [50, 60, 51], [61], { session_id: 'ses_sub' }),
    ];
    const { sequences, report } = mergeRolloutTurns(turns, META);
    assert.equal(report.prefix_breaks, 0, 'a second session is not a break');
    assert.deepEqual(
      sequences.map((s) => [s.session_id, s.prompt_ids, s.response_ids, s.loss_mask]),
      [
        ['ses_1', [1], [10, 2, 11], [1, 0, 1]],
        ['ses_sub', [50], [60, 51, 61], [1, 0, 1]],
      ],
    );
  });

  it('leaves out title and auxiliary calls and calls the upstream did not answer', () => {
    const turns = [
      turn(1, [7, 7], [8], { kind: 'title' }),
      turn(2, [1], [10]),
      turn(3, null, [], { upstream_status: 502, upstream_error: { type: 'http', message: 'bad gateway', status: 502 } }),
      turn(4, [1, 10, 2], [11]),
      turn(5, [9], [9], { kind: 'auxiliary' }),
    ];
    const { sequences, report } = mergeRolloutTurns(turns, META);
    assert.deepEqual(report, { rollout_id: 'rollout-1', sequences: 1, prefix_breaks: 0, flagged: null });
    assert.deepEqual(sequences[0]!.turns, [2, 4]);
    assert.deepEqual(sequences[0]!.response_ids, [10, 2, 11]);
  });

  it('flags a rollout whose agent turns lack token ids, and exports none of it', () => {
    const noPrompt = mergeRolloutTurns([turn(1, [1], [10]), turn(2, null, [11])], META);
    assert.deepEqual(noPrompt.sequences, []);
    assert.equal(noPrompt.report.flagged, 'turn 2 has no prompt token ids');
    assert.equal(noPrompt.report.sequences, 0);

    const noCompletion = mergeRolloutTurns([turn(1, [1], [], { per_token_logps: [] })], META);
    assert.deepEqual(noCompletion.sequences, []);
    assert.equal(noCompletion.report.flagged, 'turn 1 has no completion token ids');

    const misaligned = mergeRolloutTurns([turn(1, [1], [10, 11], { per_token_logps: [-1] })], META);
    assert.equal(misaligned.report.flagged, 'turn 1 has 2 completion token ids but 1 logprobs');

    const dropped = mergeRolloutTurns(
      [
        turn(1, null, [], {
          response: null,
          completion_token_ids: null,
          per_token_logps: null,
          dropped: { reason: 'trace_budget', message: 'over', turn_bytes: 1, field_bytes: {}, written_bytes: 0, budget_bytes: 0 },
        }),
      ],
      META,
    );
    assert.equal(dropped.report.flagged, 'turn 1 was stored without its token ids (trace_budget)');

    assert.equal(mergeRolloutTurns([turn(1, [1], [2], { kind: 'title' })], META).report.flagged, 'no answered agent turns');
  });

  it('accepts an empty completion that produced nothing', () => {
    const empty = turn(2, [1, 10, 2], [], { response: { content: '', reasoning: '', tool_calls: [] } });
    const { sequences, report } = mergeRolloutTurns([turn(1, [1], [10]), empty], META);
    assert.equal(report.flagged, null);
    assert.deepEqual(sequences[0]!.response_ids, [10, 2]);
    assert.deepEqual(sequences[0]!.loss_mask, [1, 0]);
  });
});

describe('groupIdFor', () => {
  it("takes the spec's group_id, else the task_id, else the rollout id", () => {
    assert.equal(groupIdFor({ group_id: 'g1' }, { rollout_id: 'r', task_id: 't' }), 'g1');
    assert.equal(groupIdFor({ group_id: '' }, { rollout_id: 'r', task_id: 't' }), 't');
    assert.equal(groupIdFor(undefined, { rollout_id: 'r', task_id: 't' }), 't');
    assert.equal(groupIdFor({}, { rollout_id: 'r', task_id: '' }), 'r');
  });
});

describe("the scripted model's toy chat template", () => {
  const ids = (text: string) => tokenize(text).map((t) => t.id);
  const IM_START = SPECIAL_TOKENS.imStart.id;
  const IM_END = SPECIAL_TOKENS.imEnd.id;
  const NL = ids('\n');

  it('renders <|im_start|>role\\n content <|im_end|>\\n per message, then the generation prompt', () => {
    const messages: TemplateMessage[] = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: [{ type: 'text', text: 'Hi' }] },
    ];
    assert.deepEqual(promptTokenIds(messages), [
      IM_START,
      ...ids('system\n'),
      ...ids('Be brief.'),
      IM_END,
      ...NL,
      IM_START,
      ...ids('user\n'),
      ...ids('Hi'),
      IM_END,
      ...NL,
      IM_START,
      ...ids('assistant\n'),
    ]);
    assert.equal(
      chatTemplateTokens(messages)
        .map((t) => t.token)
        .join(''),
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
    );
    assert.ok(!tokenize('<|im_start|> x').some((t) => t.id === IM_START || t.id === IM_END), 'text never tokenizes to a special id');
  });

  it("makes a faithful conversation's next prompt = prompt + completion + <|im_end|>\\n + tool result + generation prompt", () => {
    const history: TemplateMessage[] = [
      { role: 'system', content: 'You are an agent.' },
      { role: 'user', content: 'Write a.txt' },
    ];
    const prompt1 = promptTokenIds(history);
    // What the scripted model emits for text + one tool call: the text, the name, the arguments (server.ts).
    const args = '{"filePath":"a.txt","content":"A\\n"}';
    const completion1 = [...ids("I'll write it."), ...ids('write'), ...ids(args)];
    const next = [
      ...history,
      {
        role: 'assistant',
        content: "I'll write it.",
        tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'write', arguments: args } }],
      },
      { role: 'tool', tool_call_id: 'call_1', content: 'Wrote file successfully.' } as TemplateMessage,
    ];
    const prompt2 = promptTokenIds(next);
    const added = [
      IM_END,
      ...NL,
      IM_START,
      ...ids('tool\n'),
      ...ids('Wrote file successfully.'),
      IM_END,
      ...NL,
      IM_START,
      ...ids('assistant\n'),
    ];
    assert.deepEqual(prompt2, [...prompt1, ...completion1, ...added]);

    // And the merge turns it into one sequence whose masked-in tokens are exactly the completion.
    const completion2 = ids('Done.');
    const { sequences, report } = mergeRolloutTurns(
      [turn(1, prompt1, completion1), turn(2, prompt2, completion2, { per_token_logps: completion2.map((t) => -t / 100) })],
      META,
    );
    assert.equal(report.prefix_breaks, 0);
    const s = sequences[0]!;
    assert.deepEqual(s.response_ids, [...completion1, ...added, ...completion2]);
    assert.deepEqual(
      s.response_ids.filter((_, i) => s.loss_mask[i] === 1),
      [...completion1, ...completion2],
    );
    assertAligned(s);
  });

  it('renders reasoning sent back as reasoning_content, and its absence breaks the prefix as real templates do', () => {
    const history: TemplateMessage[] = [{ role: 'user', content: 'Q' }];
    const completion = [...ids('thinking hard'), ...ids('A')];
    const withReasoning = promptTokenIds([...history, { role: 'assistant', content: 'A', reasoning_content: 'thinking hard' }]);
    const without = promptTokenIds([...history, { role: 'assistant', content: 'A' }]);
    const prefix = [...promptTokenIds(history), ...completion];
    assert.deepEqual(withReasoning.slice(0, prefix.length), prefix);
    assert.notDeepEqual(without.slice(0, prefix.length), prefix);
  });
});
