/** Time and timers, injected so the lifetime logic runs in a unit test without waiting. */
export interface LifetimeClock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realClock: LifetimeClock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** Renewals are at most this far apart while work goes on: E2B's end is never more than this behind the last activity. */
const MAX_RENEW_SPACING_MS = 60_000;
/** Nor closer than this, whatever the lifetime (tests use lifetimes of seconds). */
const MIN_RENEW_SPACING_MS = 250;

export interface IdleLifetimeOptions {
  /** How long after its last activity the sandbox ends. It was created with this timeout, so the first end is creation + this. */
  lifetimeMs: number;
  /** Asks E2B to end the sandbox `ms` from now (the SDK's `setTimeout`, which extends or shortens). */
  renew: (ms: number) => Promise<void>;
  /** The lifetime ran out with no activity: E2B ends the sandbox now, and so should we. Called once. */
  onExpired: () => void;
  /** A renewal failed; it is tried again at the next check. Nothing is killed for it. */
  onRenewFailed: (error: unknown) => void;
  clock?: LifetimeClock;
}

/**
 * An idle-based lifetime: the sandbox ends `lifetimeMs` after its last activity, not after its creation. `touch()` only
 * notes the time (no request: a warm execute_python call stays one round trip); a background check renews E2B's
 * timeout when there was activity since the last renewal, so renewals are spaced at least `spacingMs` apart (a quarter
 * of the lifetime, at most a minute). Each renewal sets E2B's end to exactly last activity + lifetime, and the local
 * end (when `onExpired` fires) moves with it. Activity close to the end renews at once, before E2B's end can pass.
 */
export class IdleLifetime {
  readonly spacingMs: number;
  private readonly clock: LifetimeClock;
  private lastActivityAt: number;
  /** The activity the latest renewal (or the creation) covered. */
  private renewedActivityAt: number;
  /** When the sandbox ends, here and (once the renewal in flight lands) at E2B. */
  private endsAt: number;
  private timer: unknown = null;
  private renewing = false;
  private stopped = false;

  constructor(private readonly options: IdleLifetimeOptions) {
    this.clock = options.clock ?? realClock;
    this.spacingMs = Math.max(MIN_RENEW_SPACING_MS, Math.min(MAX_RENEW_SPACING_MS, Math.floor(options.lifetimeMs / 4)));
    const now = this.clock.now();
    this.lastActivityAt = now;
    this.renewedActivityAt = now;
    this.endsAt = now + options.lifetimeMs;
    this.schedule(this.nextDelay(now));
  }

  /** Work went on: a command started, input was written, output came, a file was transferred. Cheap: no request. */
  touch(): void {
    if (this.stopped) return;
    const now = this.clock.now();
    this.lastActivityAt = now;
    // Near the end, the next scheduled check could come after E2B has ended the sandbox: check now instead.
    if (this.endsAt - now <= this.spacingMs && !this.renewing) this.schedule(0);
  }

  /** The sandbox is gone (killed): no more renewals or expiry. */
  stop(): void {
    this.stopped = true;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(delayMs: number): void {
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = this.clock.setTimeout(() => this.check(), Math.max(0, delayMs));
  }

  /** A check every `spacingMs`, and one at the end itself (activity nearer the end than that checks at once). */
  private nextDelay(now: number): number {
    return Math.min(this.spacingMs, this.endsAt - now);
  }

  private check(): void {
    this.timer = null;
    if (this.stopped) return;
    const now = this.clock.now();
    if (this.lastActivityAt > this.renewedActivityAt && !this.renewing) this.renew(now);
    if (now >= this.endsAt) {
      this.stop();
      this.options.onExpired();
      return;
    }
    this.schedule(this.nextDelay(now));
  }

  private renew(now: number): void {
    const covered = this.lastActivityAt;
    this.renewedActivityAt = covered;
    this.endsAt = covered + this.options.lifetimeMs;
    this.renewing = true;
    this.options
      .renew(this.endsAt - now)
      .catch((error: unknown) => {
        // Tried again at the next check (the activity counts as not covered yet); the local end stays where it moved.
        if (this.renewedActivityAt === covered) this.renewedActivityAt = Number.NEGATIVE_INFINITY;
        if (!this.stopped) this.options.onRenewFailed(error);
      })
      .finally(() => (this.renewing = false));
  }
}
