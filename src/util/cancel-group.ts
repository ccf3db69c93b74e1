/** The reason a CancelGroup aborts with, so the cancelled work can say why it stopped. */
export class Cancellation {
  constructor(readonly why: string) {}
}

/**
 * Work that must be cancelled, and waited for, when its owner ends: a session's rollouts when its client goes,
 * every rollout when the process shuts down. Waiting matters: a cancelled rollout still stores its trace.
 */
export class CancelGroup {
  private readonly controller = new AbortController();
  private readonly running = new Set<Promise<unknown>>();

  get size(): number {
    return this.running.size;
  }

  /** Runs `work` with a signal that aborts when `signal` does or the group is cancelled (already, or later). */
  run<T>(signal: AbortSignal | undefined, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const combined = signal ? AbortSignal.any([signal, this.controller.signal]) : this.controller.signal;
    const promise = work(combined);
    this.running.add(promise);
    const forget = () => void this.running.delete(promise);
    promise.then(forget, forget);
    return promise;
  }

  /** Aborts everything running (and anything started afterwards) with `reason`, then waits until all of it has ended. */
  async cancelAll(reason: string): Promise<void> {
    this.controller.abort(new Cancellation(reason));
    await Promise.allSettled([...this.running]);
  }
}
