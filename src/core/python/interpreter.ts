import { SandboxError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { ProcessExit, Sandbox, SandboxProcess } from '../../sandbox/types.js';
import { CappedOutput } from '../../util/capped-output.js';

/** What the driver (resources/python/driver.py) answers for one exec request. */
interface DriverReply {
  id: number;
  stdout: string;
  stderr: string;
  exit_code: number;
  interrupted: boolean;
  dropped: { stdout: number; stderr: number };
}

export type ExecutionOutcome =
  /** The code ran to completion (successfully or with an exception); the interpreter lives on. */
  | { kind: 'completed'; reply: DriverReply }
  /** The deadline passed or the caller gave up, and the interrupt was honoured; state is kept. */
  | { kind: 'interrupted'; reason: 'timeout' | 'cancelled'; reply: DriverReply }
  /** The deadline passed or the caller gave up, and the code ignored the interrupt: the interpreter was killed. */
  | { kind: 'killed'; reason: 'timeout' | 'cancelled' }
  /** The interpreter process ended by itself while running the code (os._exit, segfault, OOM kill). */
  | { kind: 'died'; exit: ProcessExit; driverLog: string };

export interface ExecuteOptions {
  timeoutMs: number;
  maxOutputBytes: number;
  signal?: AbortSignal;
}

const READY_TIMEOUT_MS = 30_000;
/** How long interrupted code gets to unwind before the interpreter is killed. */
const INTERRUPT_GRACE_MS = 2_000;

interface Pending {
  resolve: (reply: DriverReply | null) => void;
}

/**
 * Host side of one long-lived Python process in a sandbox. Calls must not overlap (the episode
 * serialises them); a call whose code hangs is interrupted, then the process is killed.
 */
export class PythonInterpreter {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private exitInfo: ProcessExit | null = null;
  private lineBuffer = '';
  private readyResolve: ((ready: boolean) => void) | null = null;

  private constructor(
    private readonly process: SandboxProcess,
    private readonly driverLog: CappedOutput,
    private readonly logger: Logger,
  ) {
    void process.exited.then((exit) => this.onExit(exit));
  }

  static async start(sandbox: Sandbox, options: { seed?: number; logger: Logger }): Promise<PythonInterpreter> {
    const [python, driver] = await Promise.all([sandbox.pythonExecutable(), sandbox.resourcePath('python/driver.py')]);
    const driverLog = new CappedOutput(16 * 1024);
    let interpreter: PythonInterpreter | null = null;
    const env: Record<string, string> = { PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1' };
    if (options.seed !== undefined) {
      env.OPENCODE_ENV_SEED = String(options.seed);
      env.PYTHONHASHSEED = String(options.seed);
    }
    const proc = await sandbox.start([python, '-u', driver], {
      env,
      onStdout: (chunk) => interpreter?.onStdout(chunk),
      onStderr: (chunk) => driverLog.push(chunk),
    });
    interpreter = new PythonInterpreter(proc, driverLog, options.logger);
    await interpreter.waitUntilReady();
    return interpreter;
  }

  get alive(): boolean {
    return this.exitInfo === null;
  }

  private async waitUntilReady(): Promise<void> {
    const ready = new Promise<boolean>((resolve) => {
      this.readyResolve = resolve;
    });
    const exited = this.process.exited.then(() => false);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), READY_TIMEOUT_MS);
    });
    const ok = await Promise.race([ready, exited, timedOut]);
    clearTimeout(timer);
    if (!ok) {
      await this.process.kill();
      const detail = this.driverLog.toString().trim();
      throw new SandboxError(
        `the Python interpreter did not start${this.exitInfo ? ` (exit code ${this.exitInfo.exitCode})` : ` within ${READY_TIMEOUT_MS / 1000} s`}` +
          (detail ? `: ${detail}` : ''),
      );
    }
  }

  private onStdout(chunk: Buffer): void {
    this.lineBuffer += chunk.toString('utf8');
    let newline: number;
    while ((newline = this.lineBuffer.indexOf('\n')) >= 0) {
      const line = this.lineBuffer.slice(0, newline);
      this.lineBuffer = this.lineBuffer.slice(newline + 1);
      this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    let message: Partial<DriverReply> & { ready?: boolean };
    try {
      message = JSON.parse(line);
    } catch {
      this.logger.warn({ line: line.slice(0, 200) }, 'unparseable message from python driver');
      return;
    }
    if (message.ready) {
      this.readyResolve?.(true);
      return;
    }
    const pending = message.id !== undefined ? this.pending.get(message.id) : undefined;
    if (!pending) return; // a late answer to a call we already gave up on
    this.pending.delete(message.id!);
    pending.resolve(message as DriverReply);
  }

  private onExit(exit: ProcessExit): void {
    if (this.exitInfo) return;
    this.exitInfo = exit;
    for (const pending of this.pending.values()) pending.resolve(null);
    this.pending.clear();
  }

  async execute(code: string, options: ExecuteOptions): Promise<ExecutionOutcome> {
    if (!this.alive) throw new SandboxError('the Python interpreter is not running');
    const id = this.nextId++;
    const replyPromise = new Promise<DriverReply | null>((resolve) => this.pending.set(id, { resolve }));
    await this.process.write(`${JSON.stringify({ op: 'exec', id, code, max_output_bytes: options.maxOutputBytes })}\n`);

    let stopReason: 'timeout' | 'cancelled' | null = null;
    const stopRequested = new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        stopReason = 'timeout';
        resolve();
      }, options.timeoutMs);
      const onAbort = () => {
        stopReason = 'cancelled';
        resolve();
      };
      if (options.signal?.aborted) onAbort();
      options.signal?.addEventListener('abort', onAbort, { once: true });
      void replyPromise.finally(() => {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
      });
    });

    const first = await Promise.race([replyPromise, stopRequested.then(() => 'stop' as const)]);
    if (first !== 'stop') return this.outcomeFor(first, null);

    await this.process.write(`${JSON.stringify({ op: 'interrupt', id })}\n`);
    let graceTimer: NodeJS.Timeout | undefined;
    const grace = new Promise<'grace-over'>((resolve) => {
      graceTimer = setTimeout(() => resolve('grace-over'), INTERRUPT_GRACE_MS);
    });
    const afterInterrupt = await Promise.race([replyPromise, grace]);
    clearTimeout(graceTimer);
    if (afterInterrupt !== 'grace-over') return this.outcomeFor(afterInterrupt, stopReason);

    this.logger.info({ call: id }, 'python code ignored the interrupt; killing the interpreter');
    this.pending.delete(id);
    await this.process.kill();
    this.onExit(await this.process.exited);
    return { kind: 'killed', reason: stopReason! };
  }

  private outcomeFor(reply: DriverReply | null, stopReason: 'timeout' | 'cancelled' | null): ExecutionOutcome {
    if (reply === null) {
      return { kind: 'died', exit: this.exitInfo ?? { exitCode: 1, signal: null }, driverLog: this.driverLog.toString() };
    }
    if (stopReason && reply.interrupted) return { kind: 'interrupted', reason: stopReason, reply };
    return { kind: 'completed', reply };
  }

  /** Ends the interpreter: closing its input makes the driver exit; a kill follows if it lingers. */
  async shutdown(): Promise<void> {
    if (!this.alive) return;
    await this.process.endInput();
    const exitedInTime = await Promise.race([
      this.process.exited.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 1000).unref()),
    ]);
    if (!exitedInTime) await this.process.kill();
    this.onExit(await this.process.exited);
  }
}
