import { z } from 'zod';
import { SandboxError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { ProcessExit, Sandbox, SandboxProcess } from '../../sandbox/types.js';
import { CappedOutput } from '../../util/capped-output.js';
import { LineFrameReader } from './line-frames.js';

/** One exec reply as the driver (resources/python/driver.py) sends it: output is base64, so its size is bounded. */
const wireReplySchema = z.object({
  id: z.number().int(),
  stdout_b64: z.string(),
  stderr_b64: z.string(),
  exit_code: z.number().int(),
  interrupted: z.boolean(),
  dropped: z.object({ stdout: z.number(), stderr: z.number() }),
});

/** What the driver answers for one exec request, with its output decoded. */
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
/** Room for a frame's JSON envelope and truncation markers; also the limit outside a call (the ready message). */
const FRAME_ENVELOPE_BYTES = 64 * 1024;

/** The largest reply an honest driver sends: two streams of at most `maxOutputBytes` each, base64-encoded (4/3), and the envelope. */
function replyFrameLimit(maxOutputBytes: number): number {
  return Math.ceil((2 * 4 * maxOutputBytes) / 3) + FRAME_ENVELOPE_BYTES;
}

interface PendingCall {
  id: number;
  maxOutputBytes: number;
  resolve: (reply: DriverReply | null) => void;
}

/**
 * Host side of one long-lived Python process in a sandbox. Calls must not overlap (the episode
 * serialises them); a call whose code hangs is interrupted, then the process is killed. Every frame from
 * the driver is bounded and must be the one expected next (the ready message, then the reply of the
 * pending call); anything else breaks the protocol and kills the interpreter, and the call reports that
 * the interpreter died.
 */
export class PythonInterpreter {
  private nextId = 1;
  private pending: PendingCall | null = null;
  private exitInfo: ProcessExit | null = null;
  private readonly frames = new LineFrameReader();
  private ready = false;
  /** Set once frames no longer matter: the protocol was broken, or the process is being killed. */
  private ignoreFrames = false;
  private protocolBroken = false;
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
    return this.exitInfo === null && !this.protocolBroken;
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
    if (this.ignoreFrames) return;
    const limit = this.pending ? replyFrameLimit(this.pending.maxOutputBytes) : FRAME_ENVELOPE_BYTES;
    const { frames, overflow } = this.frames.push(chunk, limit);
    for (const frame of frames) {
      this.onFrame(frame);
      if (this.ignoreFrames) return;
    }
    if (overflow) this.breakProtocol(`a frame longer than ${limit} bytes`);
  }

  private onFrame(frame: string): void {
    let message: unknown;
    try {
      message = JSON.parse(frame);
    } catch {
      this.breakProtocol('a frame that is not JSON');
      return;
    }
    if (!this.ready) {
      if ((message as { ready?: unknown } | null)?.ready !== true) {
        this.breakProtocol('a frame before the ready message');
        return;
      }
      this.ready = true;
      this.readyResolve?.(true);
      return;
    }
    const parsed = wireReplySchema.safeParse(message);
    if (!parsed.success) {
      this.breakProtocol('a malformed reply');
      return;
    }
    const reply = parsed.data;
    const pending = this.pending;
    if (!pending || reply.id !== pending.id) {
      this.breakProtocol(`a reply for call ${reply.id} while ${pending ? `call ${pending.id}` : 'no call'} was pending`);
      return;
    }
    this.pending = null;
    pending.resolve({
      id: reply.id,
      stdout: Buffer.from(reply.stdout_b64, 'base64').toString('utf8'),
      stderr: Buffer.from(reply.stderr_b64, 'base64').toString('utf8'),
      exit_code: reply.exit_code,
      interrupted: reply.interrupted,
      dropped: reply.dropped,
    });
  }

  /** The driver sent what it never should: kill it; the pending call (if any) reports that the interpreter died. */
  private breakProtocol(what: string): void {
    if (this.ignoreFrames) return;
    this.ignoreFrames = true;
    this.protocolBroken = true;
    this.logger.warn({ what }, 'python driver broke the protocol; killing the interpreter');
    this.driverLog.push(Buffer.from(`\nopencode-env: the interpreter broke its protocol with the server (${what}), so it was killed.\n`));
    void this.process.kill();
  }

  private onExit(exit: ProcessExit): void {
    if (this.exitInfo) return;
    this.exitInfo = exit;
    const pending = this.pending;
    this.pending = null;
    pending?.resolve(null);
  }

  async execute(code: string, options: ExecuteOptions): Promise<ExecutionOutcome> {
    if (!this.alive) throw new SandboxError('the Python interpreter is not running');
    if (this.pending) throw new SandboxError('calls to the Python interpreter must not overlap');
    const id = this.nextId++;
    const { maxOutputBytes, signal } = options;
    // One promise settles with whatever comes first (the reply, the interpreter's exit, the deadline or the caller giving
    // up), and no more promises than that on the way: this path is most of what a call costs beyond the interpreter itself.
    let resolveReply!: (reply: DriverReply | null) => void;
    const replyPromise = new Promise<DriverReply | null>((resolve) => (resolveReply = resolve));
    let settle!: (event: DriverReply | null | 'stop') => void;
    let fail!: (error: unknown) => void;
    const firstEvent = new Promise<DriverReply | null | 'stop'>((resolve, reject) => {
      settle = resolve;
      fail = reject;
    });
    this.pending = {
      id,
      maxOutputBytes,
      resolve: (reply) => {
        resolveReply(reply);
        settle(reply);
      },
    };
    let stopReason: 'timeout' | 'cancelled' | null = null;
    const stop = (reason: 'timeout' | 'cancelled') => {
      stopReason ??= reason;
      settle('stop');
    };
    // The request goes out first: the timer and the listener are set up while the interpreter runs the code. The code
    // comes last, so the driver's supervisor reads the header alone (resources/python/driver.py, EXEC_HEADER).
    const sent = this.process.write(`${JSON.stringify({ op: 'exec', id, max_output_bytes: maxOutputBytes, code })}\n`);
    sent.catch(fail);
    const onAbort = () => stop('cancelled');
    const timer = setTimeout(stop, options.timeoutMs, 'timeout');
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });

    let first: DriverReply | null | 'stop';
    try {
      first = await firstEvent;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
    if (first !== 'stop') return this.outcomeFor(first, null);

    await sent; // the interrupt must not overtake the request on a backend whose writes are requests of their own
    await this.process.write(`${JSON.stringify({ op: 'interrupt', id })}\n`);
    let graceTimer: NodeJS.Timeout | undefined;
    const grace = new Promise<'grace-over'>((resolve) => {
      graceTimer = setTimeout(() => resolve('grace-over'), INTERRUPT_GRACE_MS);
    });
    const afterInterrupt = await Promise.race([replyPromise, grace]);
    clearTimeout(graceTimer);
    if (afterInterrupt !== 'grace-over') return this.outcomeFor(afterInterrupt, stopReason);

    this.logger.info({ call: id }, 'python code ignored the interrupt; killing the interpreter');
    this.pending = null;
    this.ignoreFrames = true;
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
