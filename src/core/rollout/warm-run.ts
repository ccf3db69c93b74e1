import { InfrastructureError } from '../../errors.js';
import { runToCompletion } from '../../sandbox/run-to-completion.js';
import type { CommandResult, SandboxProcess } from '../../sandbox/types.js';
import { WARM_DRIVER_FAILED, type WarmAgent, type WarmSettings } from './warm-pool.js';

/** Warm, the first LLM request comes well under a second after the prompt (cold: 2-3 s, 9 s on a loaded machine). */
export const WARM_FIRST_REQUEST_MS = 30_000;
const STDERR_TAIL_CHARS = 2000;

export interface WarmRunOptions {
  instruction: string;
  model: Pick<WarmSettings, 'model' | 'maxTokensCap'>;
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  onStdout: (chunk: Buffer) => void;
  onStderr: (chunk: Buffer) => void;
  /** Whether the agent has opened an LLM connection yet (its channel is bound to the rollout's proxy). */
  calledModel: () => boolean;
  /** Past this with no LLM connection, the agent is taken for hung (opencode can hang at start-up at 0% CPU). */
  firstRequestMs: number;
}

/**
 * Runs a taken warm agent: its outcome, or why opencode should run cold in the same sandbox instead. That is only
 * ever said of an agent that never reached the model (so nothing of it is in the trace): one whose driver had exited
 * before the prompt, failed before its first LLM request, or made none within `firstRequestMs`. A driver that failed
 * after it is a sandbox error (InfrastructureError).
 */
export async function runWarmAgent(agent: WarmAgent, options: WarmRunOptions): Promise<{ outcome: CommandResult } | { runCold: string }> {
  if (agent.ended) return { runCold: 'exited before its prompt' };
  let driver: SandboxProcess | null = null;
  let hung = false;
  const watchdog = setTimeout(() => {
    if (options.calledModel()) return;
    hung = true;
    void driver?.kill();
  }, options.firstRequestMs);
  // The prompt starts the agent: the deadline and the signal run from there, as for a cold start.
  let outcome: CommandResult;
  try {
    outcome = await runToCompletion(
      {
        timeoutMs: options.timeoutMs,
        maxOutputBytes: 64 * 1024,
        onStdout: options.onStdout,
        onStderr: options.onStderr,
        ...(options.signal ? { signal: options.signal } : {}),
      },
      (io) =>
        agent
          .prompt(options.instruction, options.model, { onStdout: io.onStdout!, onStderr: io.onStderr! })
          .then((started) => (driver = started)),
    );
  } catch (error) {
    return { runCold: `could not take its prompt (${(error as Error).message})` };
  } finally {
    clearTimeout(watchdog);
  }
  const driverFailed = outcome.exitCode === WARM_DRIVER_FAILED && !outcome.timedOut && !outcome.aborted;
  if (driverFailed && options.calledModel()) {
    // Past its first LLM request the trace holds its turns: no cold run can stand in for it.
    throw new InfrastructureError('sandbox', `the warm opencode failed: ${outcome.stderr.trim().slice(-STDERR_TAIL_CHARS)}`);
  }
  if (outcome.aborted || options.calledModel() || !(hung || driverFailed)) return { outcome };
  if (hung) return { runCold: `made no LLM request ${options.firstRequestMs / 1000} s after its prompt` };
  return { runCold: `failed before its first LLM request (${outcome.stderr.trim().split('\n').at(-1) ?? ''})` };
}
