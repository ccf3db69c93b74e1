import type { Logger } from './log.js';

interface Cleanup {
  name: string;
  run: () => Promise<void>;
}

/**
 * A set of cleanups that run together, last registered first (later ones depend on earlier ones: a
 * server before its sandboxes). A scope can be closed on its own, when what it owns ends (a session),
 * and then leaves nothing behind in its parent; whatever is still open runs at shutdown.
 */
export class CleanupScope {
  private readonly cleanups = new Set<Cleanup>();
  private closing: Promise<void> | null = null;
  /** Set on child scopes: drops them from their parent once they closed on their own. */
  private onClosed: (() => void) | null = null;

  constructor(
    readonly name: string,
    protected readonly logger: Logger,
  ) {}

  /** Registers a cleanup; the returned function drops it without running it. */
  onShutdown(name: string, run: () => Promise<void>): () => void {
    if (this.closing) {
      // Too late to wait for the scope's end: it has ended. Clean up now rather than never.
      void run().catch((error: unknown) => this.logger.error({ err: error, cleanup: name, scope: this.name }, 'cleanup failed'));
      return () => {};
    }
    const cleanup = { name, run };
    this.cleanups.add(cleanup);
    return () => void this.cleanups.delete(cleanup);
  }

  /** A child scope, closed with this one unless it is closed first (which also unregisters it here). */
  openScope(name: string): CleanupScope {
    const child = new CleanupScope(name, this.logger);
    const unregister = this.onShutdown(name, () => child.close());
    child.onClosed = unregister;
    return child;
  }

  /** How many cleanups are registered: what a long-running server must keep bounded. */
  get size(): number {
    return this.cleanups.size;
  }

  /** Runs every cleanup once, in reverse order; a failing one is logged and the rest still run. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.onClosed?.();
      for (const cleanup of [...this.cleanups].reverse()) {
        this.cleanups.delete(cleanup);
        try {
          await cleanup.run();
        } catch (error) {
          this.logger.error({ err: error, cleanup: cleanup.name, scope: this.name }, 'cleanup failed');
        }
      }
    })();
    return this.closing;
  }
}

/**
 * Owns process exit: every resource registers its cleanup here (or in a session's scope), and every way
 * out (client gone, signal, crash) runs them all, once, under a deadline, before the process exits.
 */
export class Lifecycle extends CleanupScope {
  private shuttingDown: Promise<never> | null = null;

  /** @param graceMs how long cleanups may take (cancelled rollouts storing traces) before the process exits anyway */
  constructor(
    logger: Logger,
    private readonly graceMs = 10_000,
  ) {
    super('process', logger);
  }

  shutdown(reason: string, exitCode = 0): Promise<never> {
    this.shuttingDown ??= this.runCleanupsAndExit(reason, exitCode);
    return this.shuttingDown;
  }

  private async runCleanupsAndExit(reason: string, exitCode: number): Promise<never> {
    // Yield first: cleanups may trigger events (a transport closing) that call shutdown() again.
    await Promise.resolve();
    this.logger.info({ reason }, 'shutting down');
    const deadline = new Promise<'deadline'>((resolve) => setTimeout(() => resolve('deadline'), this.graceMs).unref());
    if ((await Promise.race([this.close(), deadline])) === 'deadline') {
      this.logger.error({ grace_s: this.graceMs / 1000 }, 'cleanup did not finish within the shutdown grace time; exiting anyway');
    }
    process.exit(exitCode);
  }

  /** Signals and crashes end the process through `shutdown`. Called by the CLI entry, which owns the process. */
  installProcessHandlers(): void {
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.on(signal, () => void this.shutdown(`received ${signal}`, signal === 'SIGINT' ? 130 : 143));
    }
    process.on('uncaughtException', (error) => {
      this.logger.fatal({ err: error }, 'uncaught exception');
      void this.shutdown('uncaught exception', 1);
    });
    process.on('unhandledRejection', (reason) => {
      this.logger.fatal({ err: reason }, 'unhandled promise rejection');
      void this.shutdown('unhandled promise rejection', 1);
    });
  }
}
