// The batch runner (src/batch/run.ts) with a stand-in rollout service: concurrency, retries of infrastructure
// failures only (each attempt a rollout of its own), cancellation (nothing recorded for the pairs in flight),
// a refused task, and the overhead accounting the benchmark reports.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planPairs } from '../../src/batch/plan.js';
import type { ResultLine } from '../../src/batch/results.js';
import { runBatch, type BatchRunOptions } from '../../src/batch/run.js';
import type { RolloutService } from '../../src/core/rollout/run.js';
import type { RolloutResult } from '../../src/core/rollout/schema.js';
import { InvalidInputError } from '../../src/errors.js';
import { makeResult, makeSpec } from '../helpers/trace-fixtures.js';

type Outcome = Partial<RolloutResult> | Error;

/** Answers each task's attempts from a list (the last one repeats), after `delayMs`; counts calls and peak concurrency. */
function fakeRollouts(outcomes: Record<string, Outcome[]>, delayMs = 5) {
  const calls: string[] = [];
  let running = 0;
  let peak = 0;
  const service: RolloutService = {
    run: async (spec, options) => {
      const task = spec.task_id!;
      const attempt = calls.filter((c) => c === task).length;
      calls.push(task);
      running++;
      peak = Math.max(peak, running);
      try {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delayMs);
          options?.signal?.addEventListener('abort', () => {
            clearTimeout(timer);
            resolve();
          });
        });
        if (options?.signal?.aborted)
          return makeResult(`r-${calls.length}`, { task_id: task, reward: null, error: 'cancelled', error_kind: 'cancelled' });
        const list = outcomes[task] ?? [{}];
        const outcome = list[Math.min(attempt, list.length - 1)]!;
        if (outcome instanceof Error) throw outcome;
        return makeResult(`r-${calls.length}`, { task_id: task, ...outcome });
      } finally {
        running--;
      }
    },
  };
  return { service, calls, peak: () => peak };
}

function options(taskIds: string[], samples: number, service: RolloutService, extra: Partial<BatchRunOptions> = {}) {
  const lines: ResultLine[] = [];
  const opts: BatchRunOptions = {
    specs: new Map(taskIds.map((id) => [id, makeSpec({ task_id: id })])),
    pairs: planPairs(taskIds, samples),
    concurrency: 2,
    retries: 2,
    backoff: { baseMs: 1, maxMs: 2 },
    rollouts: service,
    signal: new AbortController().signal,
    onLine: async (line) => void lines.push(line),
    ...extra,
  };
  return { opts, lines };
}

const UPSTREAM_DOWN = { reward: null, error: 'upstream down', error_kind: 'upstream' as const };

describe('batch runner', () => {
  it('runs every pair once at the concurrency asked for', async () => {
    const fake = fakeRollouts({});
    const { opts, lines } = options(['a', 'b', 'c'], 2, fake.service, { concurrency: 2 });
    const stats = await runBatch(opts);
    assert.equal(lines.length, 6);
    assert.equal(stats.completed, 6);
    assert.equal(stats.rollouts, 6);
    assert.equal(fake.peak(), 2);
    assert.ok(stats.inRolloutMs > 0 && stats.overheadMs >= 0, 'time accounted');
  });

  it('retries an infrastructure failure until it succeeds, recording the final attempt and the count', async () => {
    const fake = fakeRollouts({ flaky: [UPSTREAM_DOWN, { error_kind: 'sandbox', reward: null, error: 'gone' }, { reward: 1 }] });
    const retried: number[] = [];
    const { opts, lines } = options(['flaky'], 1, fake.service, { onRetry: (_pair, attempt) => retried.push(attempt) });
    await runBatch(opts);
    assert.deepEqual(retried, [1, 2]);
    assert.equal(lines[0]!.attempts, 3);
    assert.equal(lines[0]!.reward, 1);
    assert.equal(lines[0]!.rollout_id, 'r-3', 'the line names the final attempt’s trace');
  });

  it('gives up after R retries, and never retries a policy failure or a refused task', async () => {
    const fake = fakeRollouts({
      down: [UPSTREAM_DOWN],
      wrong: [{ reward: 0 }],
      slow: [{ reward: 0, agent_timed_out: true }],
      budget: [{ reward: 0, budget_exhausted: 'max_llm_calls' }],
      refused: [new InvalidInputError('no endpoint configured')],
    });
    const { opts, lines } = options(['down', 'wrong', 'slow', 'budget', 'refused'], 1, fake.service);
    await runBatch(opts);
    const byTask = Object.fromEntries(lines.map((l) => [l.task_id, l]));
    assert.equal(byTask.down!.attempts, 3);
    assert.equal(byTask.down!.error_kind, 'upstream');
    for (const task of ['wrong', 'slow', 'budget']) assert.equal(byTask[task]!.attempts, 1, task);
    assert.equal(byTask.refused!.error_kind, 'invalid_input');
    assert.equal(byTask.refused!.attempts, 1);
    assert.equal(fake.calls.length, 3 + 4);
  });

  it('on cancellation records nothing for the pairs in flight or not started', async () => {
    const fake = fakeRollouts({}, 10_000);
    const abort = new AbortController();
    const { opts, lines } = options(['a', 'b', 'c'], 1, fake.service, { signal: abort.signal, concurrency: 2 });
    const running = runBatch(opts);
    setTimeout(() => abort.abort(), 20);
    const stats = await running;
    assert.equal(lines.length, 0);
    assert.equal(stats.completed, 0);
    assert.equal(stats.cancelled, 3, 'two in flight, one never started');
    assert.equal(fake.calls.length, 2);
  });
});
