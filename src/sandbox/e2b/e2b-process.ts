import { CommandExitError, type CommandHandle } from 'e2b';
import type { ProcessExit, SandboxProcess } from '../types.js';
import { exitFromEnvd } from './exit-status.js';

export interface E2bProcessDeps {
  handle: CommandHandle;
  /** Kills every process carrying this process's marker (a separate command in the sandbox). */
  killTree: () => Promise<void>;
  /** Told when the process has ended, so its sandbox can forget it. */
  onExit: () => void;
  /** Told when input is written: activity that keeps the sandbox alive (an execute_python call is one such write). */
  onInput?: () => void;
}

/**
 * One command running in an E2B sandbox through envd (`wrappedCommandLine`), with stdin kept open. Killing it
 * SIGKILLs the wrapper shell through envd and, at the same time, every process carrying its marker.
 */
export class E2bProcess implements SandboxProcess {
  readonly pid: number;
  readonly exited: Promise<ProcessExit>;
  private killing: Promise<void> | null = null;
  private inputEnded = false;
  /**
   * Set when the command's stream broke before envd reported an end (the sandbox died, or the connection was cut):
   * what the SDK threw. The command may still be running, or may have run in part; it is never started again.
   */
  lostWith: unknown = null;

  constructor(private readonly deps: E2bProcessDeps) {
    this.pid = deps.handle.pid;
    this.exited = deps.handle
      .wait()
      .then(
        (result) => exitFromEnvd(result.exitCode, result.error, this.killing !== null),
        (error: unknown) => {
          if (error instanceof CommandExitError) return exitFromEnvd(error.exitCode, error.error, this.killing !== null);
          // The stream broke (the sandbox died or the connection failed): the process is gone as far as we can tell.
          if (this.killing === null) this.lostWith = error;
          return exitFromEnvd(null, undefined, true);
        },
      )
      .finally(() => deps.onExit());
  }

  async write(data: string | Buffer): Promise<void> {
    if (this.inputEnded || this.killing) return;
    this.deps.onInput?.();
    // A process that already exited never reads it: that is reported through `exited`, as on the local backend.
    await this.deps.handle.sendStdin(typeof data === 'string' ? data : new Uint8Array(data)).catch(() => undefined);
  }

  async endInput(): Promise<void> {
    if (this.inputEnded) return;
    this.inputEnded = true;
    await this.deps.handle.closeStdin().catch(() => undefined);
  }

  kill(): Promise<void> {
    this.killing ??= (async () => {
      await Promise.allSettled([this.deps.handle.kill(), this.deps.killTree()]);
      await this.exited;
    })();
    return this.killing;
  }
}
