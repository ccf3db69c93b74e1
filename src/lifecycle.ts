import type { Logger } from './log.js';

const SHUTDOWN_DEADLINE_MS = 10_000;

/**
 * Owns process exit: every resource registers its cleanup here, and every way out (client gone,
 * signal, crash) runs them all, once, under a deadline, before the process exits.
 */
export class Lifecycle {
  private readonly cleanups: Array<{ name: string; run: () => Promise<void> }> = [];
  private shuttingDown: Promise<never> | null = null;

  constructor(private readonly logger: Logger) {}

  onShutdown(name: string, run: () => Promise<void>): void {
    this.cleanups.push({ name, run });
  }

  shutdown(reason: string, exitCode = 0): Promise<never> {
    if (this.shuttingDown) return this.shuttingDown;
    this.shuttingDown = this.runCleanupsAndExit(reason, exitCode);
    return this.shuttingDown;
  }

  private async runCleanupsAndExit(reason: string, exitCode: number): Promise<never> {
    // Yield first: cleanups may trigger events (a transport closing) that call shutdown() again.
    await Promise.resolve();
    this.logger.info({ reason }, 'shutting down');
    const deadline = new Promise<'deadline'>((resolve) => setTimeout(() => resolve('deadline'), SHUTDOWN_DEADLINE_MS).unref());
    // Later registrations depend on earlier ones (server before sandboxes), so undo in reverse.
    const all = (async () => {
      for (const cleanup of [...this.cleanups].reverse()) {
        try {
          await cleanup.run();
        } catch (error) {
          this.logger.error({ err: error, cleanup: cleanup.name }, 'cleanup failed');
        }
      }
    })();
    if ((await Promise.race([all, deadline])) === 'deadline') {
      this.logger.error('cleanup did not finish in time; exiting anyway');
    }
    process.exit(exitCode);
  }

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
