// The batch summary (src/batch/summary.ts): the unbiased pass@k estimator against known values, and the
// per-task and overall statistics (mean reward, pass@1 and pass@K, errors by kind, tokens, retries).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatProgress, newProgressState, recordLine } from '../../src/batch/progress.js';
import { resultLine, type ResultLine } from '../../src/batch/results.js';
import { formatSummary, passAtK, summarize } from '../../src/batch/summary.js';
import { makeResult } from '../helpers/trace-fixtures.js';

/** 1 - C(n-c, k) / C(n, k) the slow way, with exact integer binomials. */
function passAtKByBinomials(n: number, c: number, k: number): number {
  const choose = (a: number, b: number): number => {
    if (b < 0 || b > a) return 0;
    let r = 1;
    for (let i = 1; i <= b; i++) r = (r * (a - b + i)) / i;
    return r;
  };
  return 1 - choose(n - c, k) / choose(n, k);
}

function line(taskId: string, sample: number, overrides: Partial<ResultLine>): ResultLine {
  return { ...resultLine({ taskId, sample, groupId: taskId }, makeResult(`r-${taskId}-${sample}`), 1), ...overrides };
}

const RUN = { rollouts_run: 6, wall_s: 10, cpu_self_s: 1, cpu_children_s: 2 };

describe('pass@k', () => {
  it('matches the binomial formula', () => {
    for (const [n, c, k] of [
      [10, 3, 1],
      [10, 3, 5],
      [4, 1, 4],
      [20, 7, 10],
      [2, 1, 2],
      [5, 0, 3],
    ] as const) {
      assert.ok(Math.abs(passAtK(n, c, k)! - passAtKByBinomials(n, c, k)) < 1e-12, `n=${n} c=${c} k=${k}`);
    }
  });

  it('is c/n at k = 1, 1 when every draw must hit a correct one, 0 with none correct, null with fewer than k samples', () => {
    assert.equal(passAtK(4, 1, 1), 0.25);
    assert.equal(passAtK(4, 3, 2), 1);
    assert.equal(passAtK(4, 0, 4), 0);
    assert.equal(passAtK(2, 1, 3), null);
  });
});

describe('batch summary', () => {
  const lines = [
    line('a', 0, { reward: 1, prompt_tokens: 100, completion_tokens: 10 }),
    line('a', 1, { reward: 0, prompt_tokens: 50, completion_tokens: 5 }),
    line('a', 2, { reward: 1, prompt_tokens: 0, completion_tokens: 0, attempts: 3 }),
    line('b', 0, { reward: null, error: 'down', error_kind: 'upstream', attempts: 2 }),
    line('b', 1, { reward: 0.5, budget_exhausted: 'max_llm_calls' }),
    line('b', 2, { reward: 0 }),
    line('gone', 0, { reward: 1 }),
  ];
  const summary = summarize(lines, ['a', 'b'], 3, RUN);

  it('gives each task its mean reward, pass@1, pass@K and errors by kind', () => {
    const a = summary.tasks.a!;
    assert.equal(a.rollouts, 3);
    assert.equal(a.mean_reward, 0.6667);
    assert.equal(a.pass_at['pass@1'], 0.6667);
    assert.equal(a.pass_at['pass@3'], 1);
    assert.equal(a.retries, 2);
    const b = summary.tasks.b!;
    assert.equal(b.mean_reward, 0.25, 'the errored rollout has no reward and is left out of the mean');
    assert.equal(b.correct, 0, 'a partial reward is not a pass');
    assert.equal(b.pass_at['pass@3'], 0);
    assert.deepEqual(b.errors, { upstream: 1 });
    assert.equal(b.error_rate, 0.3333);
    assert.equal(b.budget_exhausted, 1);
  });

  it('averages pass@k over tasks, pools the rest, and leaves out lines of tasks not in the dataset', () => {
    const { overall } = summary;
    assert.equal(overall.tasks, 2);
    assert.equal(overall.rollouts, 6);
    assert.equal(overall.pass_at['pass@1'], 0.3333);
    assert.equal(overall.pass_at['pass@3'], 0.5);
    assert.equal(overall.prompt_tokens, 150);
    assert.equal(overall.completion_tokens, 15);
    assert.equal(overall.error_rate, 0.1667);
    assert.deepEqual(summary.run, RUN);
  });

  it('prints a row per task and an overall row', () => {
    const text = formatSummary(summary);
    assert.match(text, /^task +n +mean reward +pass@1 +pass@3 +errors +tokens in +tokens out$/m);
    assert.match(text, /^a +3 +0\.667 +0\.667 +1\.000 +- +150 +15$/m);
    assert.match(text, /^b +3 +0\.250 +0\.000 +0\.000 +upstream:1 +0 +0$/m);
    assert.match(text, /^overall \(2 tasks\) +6 +/m);
    assert.match(text, /2\.0 s \(child processes\)/);
  });
});

describe('batch progress line', () => {
  it('shows done/total, rate, ETA, mean reward and failures by kind', () => {
    const state = newProgressState(10, 2, 0);
    recordLine(state, line('a', 0, { reward: 1 }));
    recordLine(state, line('a', 1, { reward: 0 }));
    recordLine(state, line('b', 0, { reward: null, error_kind: 'sandbox' }));
    state.running = 2;
    const text = formatProgress(state, 60_000);
    assert.equal(text, 'batch 5/10 | 2 running | 3.0/min | ETA 1m40s | reward 0.500 | failures sandbox:1');
    assert.match(formatProgress(state, 60_000, 10), /^batch \[#####\.\.\.\.\.\] 5\/10/);
  });
});
