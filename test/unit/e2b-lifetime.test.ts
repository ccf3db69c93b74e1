// The E2B sandbox's idle-based lifetime (src/sandbox/e2b/lifetime.ts) on a fake clock: it ends `lifetimeMs` after the
// last activity, renews E2B's timeout in the background at most once per spacing, and a failed renewal kills nothing.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IdleLifetime, type LifetimeClock } from '../../src/sandbox/e2b/lifetime.js';

class FakeClock implements LifetimeClock {
  private time = 1_000_000;
  private timers = new Map<number, { at: number; callback: () => void }>();
  private nextId = 1;

  now(): number {
    return this.time;
  }
  setTimeout(callback: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.set(id, { at: this.time + ms, callback });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }
  /** Moves time forward, firing due timers in order (and letting renewals' promises settle between them). */
  async advance(ms: number): Promise<void> {
    const target = this.time + ms;
    for (;;) {
      const due = [...this.timers.entries()].filter(([, t]) => t.at <= target).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.time = Math.max(this.time, due[1].at);
      due[1].callback();
      await new Promise((resolve) => setImmediate(resolve));
    }
    this.time = target;
  }
  get pending(): number {
    return this.timers.size;
  }
}

function lifetime(lifetimeMs: number, renew: (ms: number) => Promise<void> = async () => undefined) {
  const clock = new FakeClock();
  const renewals: Array<{ at: number; ms: number }> = [];
  const failures: unknown[] = [];
  let expiredAt: number | null = null;
  const idle = new IdleLifetime({
    lifetimeMs,
    clock,
    renew: (ms) => {
      renewals.push({ at: clock.now(), ms });
      return renew(ms);
    },
    onExpired: () => {
      assert.equal(expiredAt, null, 'onExpired fires once');
      expiredAt = clock.now();
    },
    onRenewFailed: (error) => failures.push(error),
  });
  return { clock, idle, renewals, failures, start: clock.now(), expiredAt: () => expiredAt };
}

describe('IdleLifetime', () => {
  it('spaces renewals a quarter of the lifetime apart, at most a minute', () => {
    assert.equal(lifetime(4000).idle.spacingMs, 1000);
    assert.equal(lifetime(3_600_000).idle.spacingMs, 60_000);
    assert.equal(lifetime(100).idle.spacingMs, 250);
  });

  it('ends lifetimeMs after creation when nothing happens, with no renewal', async () => {
    const t = lifetime(4000);
    await t.clock.advance(3999);
    assert.equal(t.expiredAt(), null, 'still alive just before the end');
    await t.clock.advance(1);
    assert.equal(t.expiredAt(), t.start + 4000, 'ended at creation + lifetime');
    assert.equal(t.renewals.length, 0, 'nothing to renew');
    assert.equal(t.clock.pending, 0, 'no timer left');
  });

  it('stays alive while work goes on, renewing at most once per spacing, and ends lifetimeMs after the last activity', async () => {
    const t = lifetime(4000);
    // Activity every 100 ms for 20 s: 200 touches.
    for (let i = 0; i < 200; i++) {
      await t.clock.advance(100);
      t.idle.touch();
    }
    assert.equal(t.expiredAt(), null, 'alive after 5 lifetimes of steady work');
    assert.ok(t.renewals.length >= 15 && t.renewals.length <= 21, `about one renewal per second of work, got ${t.renewals.length}`);
    for (let i = 1; i < t.renewals.length; i++) {
      assert.ok(t.renewals[i]!.at - t.renewals[i - 1]!.at >= 1000, `renewals ${i - 1} and ${i} are a spacing apart`);
    }
    const lastActivity = t.clock.now();
    await t.clock.advance(10_000);
    assert.equal(t.expiredAt(), lastActivity + 4000, 'ended exactly lifetimeMs after the last activity');
    const last = t.renewals.at(-1)!;
    assert.equal(last.at + last.ms, lastActivity + 4000, "E2B's end was moved to the same moment");
  });

  it('renews at once when activity comes near the end', async () => {
    const t = lifetime(4000);
    await t.clock.advance(3500);
    t.idle.touch();
    await t.clock.advance(0);
    assert.equal(t.renewals.length, 1, 'renewed right away');
    assert.deepEqual(t.renewals[0], { at: t.start + 3500, ms: 4000 });
    await t.clock.advance(3999);
    assert.equal(t.expiredAt(), null, 'alive until the new end');
    await t.clock.advance(1);
    assert.equal(t.expiredAt(), t.start + 7500, 'ended lifetimeMs after that activity');
  });

  it('a failed renewal kills nothing, is reported, and is tried again at the next check', async () => {
    let fail = true;
    const t = lifetime(4000, async () => {
      if (fail) throw new Error('E2B is down');
    });
    await t.clock.advance(100);
    t.idle.touch();
    await t.clock.advance(1000);
    assert.equal(t.renewals.length, 1, 'one renewal attempted');
    assert.equal(t.failures.length, 1, 'its failure was reported');
    assert.equal(t.expiredAt(), null, 'nothing was killed');
    fail = false;
    await t.clock.advance(1000);
    assert.equal(t.renewals.length, 2, 'tried again at the next check without new activity');
    assert.equal(t.failures.length, 1, 'and it worked');
    await t.clock.advance(10_000);
    assert.equal(t.expiredAt(), t.start + 4100, 'ended lifetimeMs after the activity');
  });

  it('stop() ends renewals and expiry', async () => {
    const t = lifetime(4000);
    t.idle.touch();
    t.idle.stop();
    t.idle.touch();
    await t.clock.advance(20_000);
    assert.equal(t.expiredAt(), null, 'no expiry after stop');
    assert.equal(t.renewals.length, 0, 'no renewal after stop');
    assert.equal(t.clock.pending, 0, 'no timer left');
  });
});
