/**
 * Bounded retries for the idempotent E2B steps only: creating a sandbox and file transfers (read, write, list,
 * stat, makeDir), which can be sent again without doing anything twice. Commands are never retried: once a
 * Start request has been sent the command may be running, and sending it again could run it twice.
 *
 * Retry-After: the SDK errors carry no response headers, so only the SDK can honour it. It does so on the control
 * plane (429 with an integer Retry-After, `retries` times, within its request timeout), and we keep that (see
 * provider.ts); this module backs off exponentially for what the SDK does not retry (503, network failures, envd 429s).
 */

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  maxAttempts: number;
  /** The wait before the first retry; each later wait doubles it. */
  baseDelayMs: number;
  /** No single wait is longer. */
  maxDelayMs: number;
}

const E2B_RETRY_POLICY: RetryPolicy = { maxAttempts: 4, baseDelayMs: 500, maxDelayMs: 30_000 };

/** The clock retries wait on: real time in the server, fake time in unit tests. */
export interface RetryClock {
  sleep(ms: number): Promise<void>;
}

const realClock: RetryClock = { sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)) };

/**
 * The wait before retry number `retry` (1 for the first): base × 2^(retry-1), capped, then jittered down by up
 * to half so that many callers refused at the same moment do not come back at the same moment.
 */
export function backoffDelayMs(policy: RetryPolicy, retry: number, random: () => number = Math.random): number {
  const exponential = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (retry - 1));
  return Math.round(exponential * (0.5 + random() / 2));
}

/** An operation still failing after its last attempt; `cause` is what that attempt threw. */
export class RetriesExhaustedError extends Error {
  constructor(
    readonly attempts: number,
    cause: unknown,
  ) {
    super(`gave up after ${attempts} attempts`, { cause });
    this.name = 'RetriesExhaustedError';
  }
}

export interface RetryOptions {
  /** Whether waiting and trying again may help (a busy or unreachable service); anything else is thrown at once. */
  isRetryable: (error: unknown) => boolean;
  policy?: RetryPolicy;
  clock?: RetryClock;
  random?: () => number;
  /** Told before each wait, e.g. to log it. */
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
}

/**
 * Runs `operation` until it succeeds, throws something not retryable, or has been tried `maxAttempts` times.
 * A failure that is not retryable is rethrown as is; one still failing after the last attempt, wrapped in RetriesExhaustedError.
 */
export async function withRetries<T>(operation: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const policy = options.policy ?? E2B_RETRY_POLICY;
  const clock = options.clock ?? realClock;
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation(attempt);
    } catch (error) {
      if (!options.isRetryable(error)) throw error;
      if (attempt >= policy.maxAttempts) throw new RetriesExhaustedError(attempt, error);
      const delayMs = backoffDelayMs(policy, attempt, options.random);
      options.onRetry?.(error, attempt, delayMs);
      await clock.sleep(delayMs);
    }
  }
}
