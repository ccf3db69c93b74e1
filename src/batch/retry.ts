import type { RolloutResult } from '../core/rollout/schema.js';

/**
 * Which failed rollouts a batch runs again. Only the infrastructure's failures: the same task on a good
 * day would have given a reward. A policy's failure (reward 0, the agent's timeout, a budget) is data
 * for training and is never retried; a cancelled rollout belongs to a batch that is stopping.
 *
 * - sandbox, upstream, setup, internal: retried;
 * - verifier: retried only when a verifier command was killed at its time limit (a slow machine); an
 *   unusable reward file is the task's bug and would fail the same way again.
 */
const RETRIED_KINDS: ReadonlySet<string> = new Set(['sandbox', 'upstream', 'setup', 'internal']);

export type RetryVerdict = Pick<RolloutResult, 'error_kind'> & { verify_results: ReadonlyArray<{ timed_out: boolean }> };

export function isInfrastructureFailure(result: RetryVerdict): boolean {
  if (result.error_kind === null) return false;
  if (result.error_kind === 'verifier') return result.verify_results.some((record) => record.timed_out);
  return RETRIED_KINDS.has(result.error_kind);
}

/** Whether attempt number `attempt` (1-based) should be followed by another, with at most `retries` retries. */
export function shouldRetry(result: RetryVerdict, attempt: number, retries: number): boolean {
  return attempt <= retries && isInfrastructureFailure(result);
}

export interface BackoffSettings {
  /** The delay before the first retry, before jitter. */
  baseMs: number;
  /** No delay is longer than this. */
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffSettings = { baseMs: 2_000, maxMs: 60_000 };

/**
 * The wait before retrying after attempt `attempt` (1-based): doubling from baseMs, capped at maxMs, and
 * jittered down to half of that at random, so rollouts that failed together (an upstream restart) do
 * not all come back at the same moment.
 */
export function backoffMs(attempt: number, settings: BackoffSettings = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const ceiling = Math.min(settings.maxMs, settings.baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling * (0.5 + 0.5 * random()));
}
