// `opencode-env traces export --format tokens` on a real rollout: the scripted model (whose prompt ids follow a
// toy chat template) through the built server and real opencode, then the export merges the agent turns into one
// token-faithful training sequence.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { exampleScript, exampleTask, startScripted, type ScriptedLlm } from './helpers/scripted.js';
import { cliPath, startServer, traceTurns, type RunningServer } from './helpers/server.js';

const run = promisify(execFile);

describe('traces export --format tokens', () => {
  let server: RunningServer;
  let llm: ScriptedLlm;
  before(async () => {
    llm = await startScripted(exampleScript('script.json'));
    server = await startServer();
  });
  after(async () => {
    await server?.close();
    await llm?.close();
  });

  it('merges a scripted rollout into one sequence whose masked-in tokens are the recorded completions', async () => {
    const result = await server.callOk('run_rollout', { ...exampleTask(), base_url: llm.url, model: 'scripted-model' });
    assert.equal(result.reward, 1, JSON.stringify(result.error));
    const agentTurns = traceTurns(server.dataDir, result.rollout_id).filter((t) => t.kind === 'agent');
    assert.equal(agentTurns.length, 3, 'three scripted agent steps');

    const env = { PATH: process.env.PATH, HOME: server.home, OPENCODE_ENV_DATA_DIR: server.dataDir };
    const { stdout, stderr } = await run(process.execPath, [cliPath, 'traces', 'export', '--format', 'tokens'], { env, timeout: 60_000 });
    assert.match(stderr, /exported 1 sequences from 1 rollouts: 0 prefix breaks, 0 flagged/);
    const sequences = stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    assert.equal(sequences.length, 1, 'one opencode session, no prefix break: one sequence');
    const [s] = sequences;
    assert.deepEqual(
      { rollout_id: s.rollout_id, task_id: s.task_id, group_id: s.group_id, reward: s.reward },
      { rollout_id: result.rollout_id, task_id: 'fizzbuzz', group_id: 'fizzbuzz', reward: 1 },
      'group_id defaults to the task_id',
    );
    assert.deepEqual(
      s.turns,
      agentTurns.map((t) => t.turn),
    );
    assert.equal(s.loss_mask.length, s.response_ids.length, 'one mask per response token');
    assert.equal(s.response_logprobs.length, s.response_ids.length, 'one logprob per response token');

    const trained = s.response_ids.filter((_: number, i: number) => s.loss_mask[i] === 1);
    assert.deepEqual(
      trained,
      agentTurns.flatMap((t) => t.completion_token_ids),
      'the mask-1 tokens are exactly the recorded completion ids, in order',
    );
    assert.deepEqual(
      s.response_logprobs.filter((_: number, i: number) => s.loss_mask[i] === 1),
      agentTurns.flatMap((t) => t.per_token_logps),
      'with their recorded logprobs',
    );
    assert.ok(
      s.response_logprobs.every((lp: number, i: number) => s.loss_mask[i] === 1 || lp === 0),
      'context tokens carry logprob 0.0',
    );
    assert.ok(
      s.loss_mask.some((m: number) => m === 0),
      'tool results and generation prompts are in the response with mask 0',
    );
    assert.deepEqual(s.prompt_ids, agentTurns[0]!.prompt_token_ids, "the first agent turn's prompt");
    const last = agentTurns.at(-1)!;
    assert.deepEqual(
      [...s.prompt_ids, ...s.response_ids],
      [...last.prompt_token_ids, ...last.completion_token_ids],
      "the faithful-merge invariant: prompt + response = the last turn's prompt + completion",
    );

    // The default format is unchanged, and an unknown one is refused.
    const { stderr: turnsStderr } = await run(process.execPath, [cliPath, 'traces', 'export'], { env, timeout: 60_000 });
    assert.match(turnsStderr, /exported 1 rollouts/);
    await assert.rejects(run(process.execPath, [cliPath, 'traces', 'export', '--format', 'bogus'], { env }), /unknown --format "bogus"/);
  });
});
