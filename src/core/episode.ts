import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { SandboxError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Sandbox, SandboxProvider } from '../sandbox/types.js';
import { SerialQueue } from '../util/serial-queue.js';
import type { EpisodeState } from './episode-schema.js';
import { PythonInterpreter, type ExecutionOutcome } from './python/interpreter.js';
import { DEFAULT_PYTHON_TIMEOUT_S, type ExecutePythonResult } from './python/schema.js';
import type { RolloutResult } from './rollout/schema.js';

const DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024;

export interface EpisodeDeps {
  provider: SandboxProvider;
  logger: Logger;
}

export interface ResetOptions {
  seed?: number | undefined;
  episodeId?: string | undefined;
}

interface RolloutCounters {
  completed: number;
  cancelled: number;
  lastReward: number | null;
  lastTaskId: string | null;
  lastSandboxId: string | null;
}

const NO_ROLLOUTS: RolloutCounters = { completed: 0, cancelled: 0, lastReward: null, lastTaskId: null, lastSandboxId: null };

/**
 * One episode: a lazily created sandbox, a persistent Python interpreter inside it, and counters.
 * A reset throws all of that away and starts over.
 */
export class Episode {
  private episodeId: string = randomUUID();
  private seed: number | null = null;
  private stepCount = 0;
  private lastExitCode: number | null = null;
  private sandbox: Sandbox | null = null;
  private sandboxPromise: Promise<Sandbox> | null = null;
  private interpreter: PythonInterpreter | null = null;
  /** Set when an interpreter died, so the next call can say that it runs in a fresh one. */
  private interpreterLost: string | null = null;
  private rollouts: RolloutCounters = NO_ROLLOUTS;
  private readonly queue = new SerialQueue();
  /** Bumped by every reset, so work started before it can tell that its episode is over. */
  private generation = 0;
  private closed = false;

  constructor(private readonly deps: EpisodeDeps) {}

  /** The episode's state; the isolation is the backend's even before the episode has a sandbox. */
  async state(): Promise<EpisodeState> {
    const isolation = this.sandbox?.isolation ?? (await this.deps.provider.isolation());
    return {
      episode_id: this.episodeId,
      step_count: this.stepCount,
      last_exit_code: this.lastExitCode,
      rollouts_completed: this.rollouts.completed,
      rollouts_cancelled: this.rollouts.cancelled,
      last_reward: this.rollouts.lastReward,
      last_task_id: this.rollouts.lastTaskId,
      last_sandbox_id: this.rollouts.lastSandboxId,
      seed: this.seed,
      sandbox_backend: this.deps.provider.backend,
      isolation,
      sandbox_id: this.sandbox?.id ?? null,
      python_running: this.interpreter?.alive ?? false,
    };
  }

  /** The episode's sandbox, created on first use. */
  private getSandbox(): Promise<Sandbox> {
    if (this.closed) return Promise.reject(new SandboxError('the episode is closed'));
    if (!this.sandboxPromise) {
      const generation = this.generation;
      this.sandboxPromise = this.deps.provider
        .create({ label: 'episode', metadata: { episode_id: this.episodeId } })
        .then(async (sandbox) => {
          if (this.generation !== generation || this.closed) {
            await sandbox.kill();
            throw new SandboxError('the episode was reset while its sandbox was starting');
          }
          this.sandbox = sandbox;
          return sandbox;
        });
      this.sandboxPromise.catch(() => {
        if (this.generation === generation) this.sandboxPromise = null;
      });
    }
    return this.sandboxPromise;
  }

  executePython(code: string, options: { timeoutS?: number; signal?: AbortSignal } = {}): Promise<ExecutePythonResult> {
    const generation = this.generation;
    return this.queue.run(async () => {
      if (this.generation !== generation) return resetResult();
      const timeoutS = options.timeoutS ?? DEFAULT_PYTHON_TIMEOUT_S;
      let interpreter = this.interpreter;
      try {
        // A running interpreter is used as it is, without a detour through an async call (this is the hot path).
        if (!interpreter?.alive) interpreter = await this.ensureInterpreter(generation);
      } catch (error) {
        if (this.generation !== generation) return resetResult();
        throw error;
      }
      const restartNotice = this.interpreterLost;
      this.interpreterLost = null;

      const outcome = await interpreter.execute(code, {
        timeoutMs: timeoutS * 1000,
        maxOutputBytes: DEFAULT_MAX_OUTPUT_BYTES,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      if (this.generation !== generation) return resetResult();

      const result = describeOutcome(outcome, timeoutS);
      if (restartNotice) {
        result.state_lost = true;
        result.notice = result.notice ? `${restartNotice} ${result.notice}` : restartNotice;
      }
      if (outcome.kind === 'killed' || outcome.kind === 'died') {
        this.interpreter = null;
        this.interpreterLost =
          'This call ran in a fresh Python interpreter because the previous one ' +
          (outcome.kind === 'died' ? 'exited' : 'was killed') +
          ': variables, imports and definitions from earlier calls are gone.';
      }
      this.stepCount += 1;
      this.lastExitCode = result.exit_code;
      return result;
    });
  }

  private async ensureInterpreter(generation: number): Promise<PythonInterpreter> {
    if (this.interpreter?.alive) return this.interpreter;
    const sandbox = await this.getSandbox();
    const interpreter = await PythonInterpreter.start(sandbox, {
      ...(this.seed !== null ? { seed: this.seed } : {}),
      logger: this.deps.logger,
    });
    if (this.generation !== generation) {
      await interpreter.shutdown();
      throw new SandboxError('the episode was reset while its interpreter was starting');
    }
    this.interpreter = interpreter;
    return interpreter;
  }

  /** Counts a rollout (it ran in a sandbox of its own, not the episode's); a cancelled one changes nothing else. */
  recordRollout(result: Pick<RolloutResult, 'reward' | 'task_id' | 'sandbox_id' | 'error_kind'>): void {
    if (result.error_kind === 'cancelled') {
      this.rollouts = { ...this.rollouts, cancelled: this.rollouts.cancelled + 1 };
      return;
    }
    this.rollouts = {
      ...this.rollouts,
      completed: this.rollouts.completed + 1,
      lastReward: result.reward,
      lastTaskId: result.task_id,
      lastSandboxId: result.sandbox_id || null,
    };
  }

  /** Starts a new episode: the old sandbox (and everything running in it) is killed first. */
  async reset(options: ResetOptions = {}): Promise<EpisodeState> {
    await this.disposeResources();
    this.episodeId = options.episodeId ?? randomUUID();
    this.seed = options.seed ?? null;
    this.stepCount = 0;
    this.lastExitCode = null;
    this.interpreterLost = null;
    this.rollouts = NO_ROLLOUTS;
    return this.state();
  }

  private async disposeResources(): Promise<void> {
    const sandboxPromise = this.sandboxPromise;
    this.sandboxPromise = null;
    this.sandbox = null;
    this.interpreter = null;
    this.generation += 1;
    const sandbox = await sandboxPromise?.catch(() => null);
    await sandbox?.kill();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.disposeResources();
  }
}

function signalName(signalNumber: number): string | null {
  return Object.entries(os.constants.signals).find(([, number]) => number === signalNumber)?.[0] ?? null;
}

function resetResult(): ExecutePythonResult {
  return {
    stdout: '',
    stderr: 'The episode was reset while this code was waiting or running; it did not complete.',
    exit_code: 1,
    timed_out: false,
    state_lost: true,
    notice: 'The episode was reset.',
  };
}

function describeOutcome(outcome: ExecutionOutcome, timeoutS: number): ExecutePythonResult {
  const stopped = (reason: 'timeout' | 'cancelled') =>
    reason === 'timeout'
      ? `TimeoutError: execution exceeded the ${timeoutS} s limit (timeout_s)`
      : 'Cancelled: the client cancelled this call';
  switch (outcome.kind) {
    case 'completed':
      return {
        stdout: outcome.reply.stdout,
        stderr: outcome.reply.stderr,
        exit_code: outcome.reply.exit_code,
        timed_out: false,
        state_lost: false,
        notice: null,
      };
    case 'interrupted':
      return {
        stdout: outcome.reply.stdout,
        stderr: `${outcome.reply.stderr}${stopped(outcome.reason)} and was interrupted; the interpreter and its state are kept.\n`,
        exit_code: 1,
        timed_out: outcome.reason === 'timeout',
        state_lost: false,
        notice: null,
      };
    case 'killed':
      return {
        stdout: '',
        stderr: `${stopped(outcome.reason)} and did not stop when interrupted, so the Python interpreter was killed. Its output and state are lost; the next call starts a fresh interpreter.\n`,
        exit_code: 1,
        timed_out: outcome.reason === 'timeout',
        state_lost: true,
        notice: 'The Python interpreter was restarted: variables, imports and definitions from earlier calls are gone.',
      };
    case 'died': {
      const { signal, exitCode } = outcome.exit;
      // Sandboxes that wrap the interpreter (bwrap, shells) report a signal death as 128 + signal number.
      const impliedSignal = !signal && exitCode > 128 ? signalName(exitCode - 128) : null;
      const how = signal
        ? `was killed by signal ${signal}`
        : `exited with code ${exitCode}${impliedSignal ? ` (killed by signal ${impliedSignal})` : ''}`;
      const log = outcome.driverLog.trim();
      return {
        stdout: '',
        stderr:
          `The Python interpreter ${how} while running this code (e.g. os._exit(), a crash in native code, or running out of memory). ` +
          `Its output and state are lost; the next call starts a fresh interpreter.\n${log ? `${log}\n` : ''}`,
        exit_code: 1,
        timed_out: false,
        state_lost: true,
        notice: 'The Python interpreter exited: variables, imports and definitions from earlier calls are gone.',
      };
    }
  }
}
