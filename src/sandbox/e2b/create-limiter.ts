/** The clock a limiter waits on: real time in the server, fake time in unit tests. */
export interface LimiterClock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

const realClock: LimiterClock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/**
 * Paces sandbox creations to at most `perSecond`: each caller is given the next free slot, one interval after
 * the previous one, and waits for it. A burst is spread out in arrival order instead of meeting E2B's 429s.
 */
export class CreateLimiter {
  private readonly intervalMs: number;
  /** When the most recently granted slot starts; -Infinity before the first. */
  private lastSlot = Number.NEGATIVE_INFINITY;

  constructor(
    perSecond: number,
    private readonly clock: LimiterClock = realClock,
  ) {
    if (!(perSecond > 0) || !Number.isFinite(perSecond))
      throw new RangeError(`creations per second must be a positive number, got ${perSecond}`);
    this.intervalMs = 1000 / perSecond;
  }

  /** Resolves when the caller may create; slots are reserved at call time, so callers go in the order they asked. */
  async acquire(): Promise<void> {
    const now = this.clock.now();
    const slot = Math.max(now, this.lastSlot + this.intervalMs);
    this.lastSlot = slot;
    if (slot > now) await this.clock.sleep(slot - now);
  }
}
