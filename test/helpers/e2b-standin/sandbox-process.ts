import type { ProcessExit, SandboxProcess } from '../../../src/sandbox/types.js';

/** What envd reports about a process: `ProcessConfig` of process.proto. */
export interface ProcessConfig {
  cmd: string;
  args: string[];
  envs: Record<string, string>;
  cwd?: string;
}

/** `ProcessEvent.EndEvent` as envd (Go's os.ProcessState) fills it in. */
export interface EndEvent {
  exitCode: number;
  exited: boolean;
  status: string;
  error?: string;
}

export type ProcessEvent = { start: { pid: number } } | { data: { stdout: string } | { stderr: string } } | { end: EndEvent };

type Listener = (event: ProcessEvent) => void;

const SIGNAL_STATUS: Record<string, string> = { SIGKILL: 'signal: killed', SIGTERM: 'signal: terminated' };

/**
 * One envd process: the sandbox process plus its listeners (the Start stream, any Connect streams). It outlives
 * its streams, as in envd: a dropped or timed-out stream leaves the process running.
 */
export class StandInProcess {
  private readonly listeners = new Set<Listener>();
  private killedBy: string | null = null;
  end: EndEvent | null = null;
  private readonly launched: Promise<SandboxProcess>;
  readonly ended: Promise<EndEvent>;

  constructor(
    readonly pid: number,
    readonly config: ProcessConfig,
    stdinOpen: boolean,
    launch: (onStdout: (chunk: Buffer) => void, onStderr: (chunk: Buffer) => void) => Promise<SandboxProcess>,
  ) {
    this.launched = launch(
      (chunk) => this.emit({ data: { stdout: chunk.toString('base64') } }),
      (chunk) => this.emit({ data: { stderr: chunk.toString('base64') } }),
    );
    this.ended = this.launched.then(
      async (process) => {
        // envd without `stdin: true` gives the process no input at all.
        if (!stdinOpen) await process.endInput();
        return this.finish(await process.exited);
      },
      (error: Error) => this.finish({ exitCode: 127, signal: null }, error.message),
    );
  }

  private finish(exit: ProcessExit, failure?: string): EndEvent {
    const signal = this.killedBy ?? exit.signal;
    // Go's os.ProcessState, which envd reports: a signalled process has ExitCode() -1, Exited() false, "signal: killed".
    const signalled = signal === null ? null : (SIGNAL_STATUS[signal] ?? `signal: ${signal}`);
    const status = signalled ?? `exit status ${exit.exitCode}`;
    this.end = {
      exitCode: signalled ? -1 : exit.exitCode,
      exited: !signalled,
      status,
      ...(failure ? { error: failure } : signalled || exit.exitCode !== 0 ? { error: status } : {}),
    };
    this.emit({ end: this.end });
    return this.end;
  }

  /** Listeners get every event from now on; returns the unsubscribe function. */
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(event: ProcessEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  async write(data: Buffer): Promise<void> {
    await (await this.launched).write(data);
  }

  async closeStdin(): Promise<void> {
    await (await this.launched).endInput();
  }

  /** SIGKILL and SIGTERM both end the whole process tree: the local backend kills trees, not single processes. */
  async signal(name: 'SIGKILL' | 'SIGTERM'): Promise<void> {
    this.killedBy ??= name;
    await (await this.launched).kill();
  }
}
