import { setTimeout as sleep } from 'node:timers/promises';
import type { RolloutService } from '../core/rollout/run.js';
import { blankRolloutResult, type RolloutResult, type RolloutSpec } from '../core/rollout/schema.js';
import { InvalidInputError } from '../errors.js';
import type { BatchPair } from './plan.js';
import { resultLine, type ResultLine } from './results.js';
import { backoffMs, DEFAULT_BACKOFF, shouldRetry, type BackoffSettings } from './retry.js';

export interface BatchRunOptions {
  /** Each task's rollout, by task id. */
  specs: ReadonlyMap<string, RolloutSpec>;
  /** The pairs to run, in order. */
  pairs: readonly BatchPair[];
  concurrency: number;
  /** Retries per pair for infrastructure failures (see retry.ts). */
  retries: number;
  backoff?: BackoffSettings;
  rollouts: RolloutService;
  /** Aborting cancels the rollouts in flight (they store their traces as cancelled) and starts no more. */
  signal: AbortSignal;
  /** Called with each pair's final line; the pair counts as done once this resolves (the line is on disk). */
  onLine(line: ResultLine): Promise<void>;
  onRolloutStart?(pair: BatchPair, attempt: number): void;
  onRolloutEnd?(pair: BatchPair, attempt: number): void;
  /** A failed attempt that will be retried after `delayMs`. */
  onRetry?(pair: BatchPair, attempt: number, result: RolloutResult, delayMs: number): void;
}

export interface BatchRunStats {
  /** Pairs with a line written. */
  completed: number;
  /** Pairs left without a line because the batch was cancelled (a resume reruns them). */
  cancelled: number;
  /** Rollouts started, retries included. */
  rollouts: number;
  /** Summed time the workers spent inside rollouts.run. */
  inRolloutMs: number;
  /** Summed time spent waiting before retries. */
  backoffMs: number;
  /** Summed time the workers spent outside it, backoff waits excluded: the runner's own overhead (writing lines included). */
  overheadMs: number;
}

/**
 * A rollout that threw instead of returning a result: refused before it started (an endpoint that cannot be
 * resolved: `invalid_input`, the task's problem, never retried) or a bug (`internal`, retried).
 */
function thrownResult(spec: RolloutSpec, error: unknown): { result: RolloutResult; invalid: boolean } {
  const result = blankRolloutResult({
    rollout_id: '',
    task_id: spec.task_id ?? '',
    mode: spec.mode,
    endpoint: { name: '', base_url: '', model: '' },
    template: spec.template ?? null,
  });
  const invalid = error instanceof InvalidInputError;
  result.error = invalid ? error.message : `internal error: ${(error as Error).message}`;
  result.error_kind = 'internal';
  return { result, invalid };
}

/**
 * Runs the pairs with `concurrency` workers. Each pair's attempts run one after another; an infrastructure
 * failure is retried (each attempt is its own rollout with its own trace) and the final attempt is recorded.
 */
export async function runBatch(options: BatchRunOptions): Promise<BatchRunStats> {
  const stats: BatchRunStats = { completed: 0, cancelled: 0, rollouts: 0, inRolloutMs: 0, backoffMs: 0, overheadMs: 0 };
  const { signal } = options;
  let next = 0;

  const runPair = async (pair: BatchPair): Promise<void> => {
    const spec = options.specs.get(pair.taskId);
    if (!spec) throw new Error(`no task ${pair.taskId} in the dataset`);
    for (let attempt = 1; ; attempt++) {
      if (signal.aborted) {
        stats.cancelled++;
        return;
      }
      options.onRolloutStart?.(pair, attempt);
      stats.rollouts++;
      const t0 = performance.now();
      const { result, invalid } = await options.rollouts.run(spec, { signal }).then(
        (value) => ({ result: value, invalid: false }),
        (error: unknown) => thrownResult(spec, error),
      );
      stats.inRolloutMs += performance.now() - t0;
      options.onRolloutEnd?.(pair, attempt);
      if (invalid) {
        // Not a rollout error kind: the line says the task was refused, so nothing retries it.
        await options.onLine({ ...resultLine(pair, result, attempt), error_kind: 'invalid_input' });
        stats.completed++;
        return;
      }
      if (signal.aborted || result.error_kind === 'cancelled') {
        stats.cancelled++;
        return;
      }
      if (shouldRetry(result, attempt, options.retries)) {
        const delay = backoffMs(attempt, options.backoff ?? DEFAULT_BACKOFF);
        options.onRetry?.(pair, attempt, result, delay);
        const w0 = performance.now();
        await sleep(delay, undefined, { signal }).catch(() => undefined);
        stats.backoffMs += performance.now() - w0;
        continue;
      }
      await options.onLine(resultLine(pair, result, attempt));
      stats.completed++;
      return;
    }
  };

  const worker = async (): Promise<number> => {
    const started = performance.now();
    while (next < options.pairs.length && !signal.aborted) await runPair(options.pairs[next++]!);
    return performance.now() - started;
  };

  const workers = Math.max(1, Math.min(options.concurrency, options.pairs.length));
  const elapsed = await Promise.all(Array.from({ length: workers }, worker));
  stats.cancelled += options.pairs.length - next;
  stats.overheadMs = Math.max(0, elapsed.reduce((a, b) => a + b, 0) - stats.inRolloutMs - stats.backoffMs);
  return stats;
}
