// The batch's retry policy (src/batch/retry.ts): infrastructure failures are retried with bounded, jittered
// exponential backoff; policy failures (reward 0, agent timeout, budget) and cancellations never are.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoffMs, isInfrastructureFailure, shouldRetry } from '../../src/batch/retry.js';

const ok = { error_kind: null, verify_results: [] };
const failed = (kind: string, verifierTimedOut = false) =>
  ({ error_kind: kind, verify_results: [{ timed_out: verifierTimedOut }] }) as Parameters<typeof shouldRetry>[0];

describe('batch retry policy', () => {
  it('retries sandbox, upstream, setup and internal failures, and a verifier killed at its time limit', () => {
    for (const kind of ['sandbox', 'upstream', 'setup', 'internal']) assert.equal(isInfrastructureFailure(failed(kind)), true, kind);
    assert.equal(isInfrastructureFailure(failed('verifier', true)), true, 'verifier timeout');
  });

  it('never retries a policy failure, a cancellation, a refused task or an unusable reward file', () => {
    assert.equal(isInfrastructureFailure(ok), false, 'reward 0, agent timeout and budgets have no error_kind');
    assert.equal(isInfrastructureFailure(failed('cancelled')), false);
    assert.equal(isInfrastructureFailure(failed('invalid_input')), false);
    assert.equal(isInfrastructureFailure(failed('verifier', false)), false, 'an unusable reward file is the task’s bug');
  });

  it('stops after R retries: attempt R+1 is the last', () => {
    assert.equal(shouldRetry(failed('upstream'), 1, 2), true);
    assert.equal(shouldRetry(failed('upstream'), 2, 2), true);
    assert.equal(shouldRetry(failed('upstream'), 3, 2), false);
    assert.equal(shouldRetry(failed('upstream'), 1, 0), false, 'no retries asked for');
  });

  it('doubles the delay, jitters it down to half at most, and caps it', () => {
    const settings = { baseMs: 1000, maxMs: 5000 };
    assert.equal(
      backoffMs(1, settings, () => 1),
      1000,
    );
    assert.equal(
      backoffMs(2, settings, () => 1),
      2000,
    );
    assert.equal(
      backoffMs(3, settings, () => 1),
      4000,
    );
    assert.equal(
      backoffMs(4, settings, () => 1),
      5000,
      'capped',
    );
    assert.equal(
      backoffMs(30, settings, () => 1),
      5000,
      'no overflow far out',
    );
    assert.equal(
      backoffMs(2, settings, () => 0),
      1000,
      'jitter takes off half at most',
    );
    for (let i = 0; i < 100; i++) {
      const delay = backoffMs(3, settings);
      assert.ok(delay >= 2000 && delay <= 4000, `delay ${delay} within [2000, 4000]`);
    }
  });
});
