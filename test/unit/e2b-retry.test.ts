// The E2B backend's retry policy (with fake time) and its translation of SDK errors into SandboxErrors.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AuthenticationError, CommandExitError, NotEnoughSpaceError, RateLimitError, ServiceBusyError, TimeoutError } from 'e2b';
import { SandboxError } from '../../src/errors.js';
import { classifyE2bError, isTransientE2bError, sandboxErrorFromE2b } from '../../src/sandbox/e2b/e2b-errors.js';
import { backoffDelayMs, RetriesExhaustedError, withRetries, type RetryClock, type RetryPolicy } from '../../src/sandbox/e2b/retry.js';

const policy: RetryPolicy = { maxAttempts: 4, baseDelayMs: 500, maxDelayMs: 30_000 };

/** Records every wait and returns at once. */
function fakeClock(): RetryClock & { waits: number[] } {
  const waits: number[] = [];
  return { waits, sleep: async (ms) => void waits.push(ms) };
}

describe('backoffDelayMs', () => {
  it('doubles from the base, never passes the cap, and jitters down by at most half', () => {
    assert.deepEqual(
      [1, 2, 3, 4].map((retry) => backoffDelayMs(policy, retry, () => 1)),
      [500, 1000, 2000, 4000],
    );
    assert.equal(
      backoffDelayMs(policy, 20, () => 1),
      30_000,
      'capped',
    );
    assert.equal(
      backoffDelayMs(policy, 1, () => 0),
      250,
      'at most half off',
    );
  });
});

describe('withRetries', () => {
  it('retries a retryable failure with growing waits, then succeeds', async () => {
    const clock = fakeClock();
    let calls = 0;
    const result = await withRetries(
      async () => {
        if (++calls < 3) throw new ServiceBusyError('busy');
        return 'made';
      },
      { policy, clock, random: () => 1, isRetryable: () => true },
    );
    assert.equal(result, 'made');
    assert.equal(calls, 3);
    assert.deepEqual(clock.waits, [500, 1000]);
  });

  it('gives up after maxAttempts with the last error as the cause', async () => {
    const clock = fakeClock();
    let calls = 0;
    const last = new ServiceBusyError('still busy');
    await assert.rejects(
      withRetries(
        async () => {
          calls++;
          throw last;
        },
        { policy, clock, random: () => 1, isRetryable: () => true },
      ),
      (error: unknown) => error instanceof RetriesExhaustedError && error.attempts === 4 && error.cause === last,
    );
    assert.equal(calls, 4);
    assert.deepEqual(clock.waits, [500, 1000, 2000], 'a wait between attempts, none after the last');
  });

  it('throws a failure that is not retryable at once, unwrapped', async () => {
    const clock = fakeClock();
    const denied = new AuthenticationError('no');
    await assert.rejects(
      withRetries(
        async () => {
          throw denied;
        },
        { policy, clock, isRetryable: () => false },
      ),
      (error: unknown) => error === denied,
    );
    assert.deepEqual(clock.waits, []);
  });
});

describe('E2B errors', () => {
  const context = { step: 'file', what: 'write /a', sandboxId: 'sbx1' } as const;

  it('classifies what the SDK throws', () => {
    assert.equal(classifyE2bError(new AuthenticationError('Unauthorized'), 'create'), 'auth');
    assert.equal(classifyE2bError(new RateLimitError('Rate limit exceeded'), 'create'), 'rate_limit');
    assert.equal(classifyE2bError(new RateLimitError('maximum number of concurrent E2B sandboxes (20)'), 'create'), 'quota');
    assert.equal(classifyE2bError(new NotEnoughSpaceError('full'), 'file'), 'no_space');
    assert.equal(classifyE2bError(new ServiceBusyError('busy'), 'create'), 'busy');
    assert.equal(classifyE2bError(new TimeoutError('x: The sandbox was killed or reached its end of life'), 'command'), 'sandbox_ended');
    assert.equal(classifyE2bError(new TimeoutError("x: likely due to exceeding 'requestTimeoutMs'"), 'file'), 'other');
    assert.equal(classifyE2bError(new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } }), 'create'), 'network');
    assert.equal(classifyE2bError(new CommandExitError({ exitCode: 1, stdout: '', stderr: '', error: '' }), 'command'), 'other');
  });

  it('retries only what waiting may cure, and a 429 on create only in the SDK', () => {
    assert.equal(isTransientE2bError(new ServiceBusyError('busy'), 'create'), true);
    assert.equal(isTransientE2bError(new TypeError('fetch failed'), 'file'), true);
    assert.equal(isTransientE2bError(new RateLimitError('slow down'), 'file'), true);
    assert.equal(isTransientE2bError(new RateLimitError('slow down'), 'create'), false);
    assert.equal(isTransientE2bError(new AuthenticationError('no'), 'create'), false);
    assert.equal(isTransientE2bError(new NotEnoughSpaceError('full'), 'file'), false);
  });

  it('makes a SandboxError that says what to do, keeps the cause, and counts attempts', () => {
    const cause = new NotEnoughSpaceError('disk full');
    const error = sandboxErrorFromE2b(cause, context);
    assert.ok(error instanceof SandboxError, 'a SandboxError');
    assert.match(error.message, /^could not write \/a in sandbox sbx1: sandbox sbx1 has no disk space left \(507\)/);
    assert.match(error.message, /NotEnoughSpaceError: disk full/, "keeps the SDK's message");
    assert.equal(error.cause, cause);
    const exhausted = sandboxErrorFromE2b(new RetriesExhaustedError(4, new ServiceBusyError('busy')), context);
    assert.match(exhausted.message, /after 4 attempts: E2B is temporarily unavailable \(503\)/);
    const ours = new SandboxError('already ours');
    assert.equal(sandboxErrorFromE2b(ours, context), ours, 'our own errors pass through');
  });
});
