import { CappedOutput } from '../util/capped-output.js';
import type { CommandResult, RunOptions, SandboxProcess, StartOptions } from './types.js';

const DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024;

/**
 * What every backend's `run()` shares: capped capture of both streams, the deadline and the abort signal (each kills
 * the command), feeding stdin, and the result. The backend starts the process (`start`, given the capture callbacks)
 * and may act once it has exited (`afterExit`, told whether the run was stopped by the deadline or the signal).
 */
export async function runToCompletion<P extends SandboxProcess>(
  options: RunOptions,
  start: (io: Pick<StartOptions, 'cwd' | 'env' | 'onStdout' | 'onStderr'>) => P | Promise<P>,
  afterExit?: (child: P, stopped: boolean) => Promise<void>,
): Promise<CommandResult> {
  const limit = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  const stdout = new CappedOutput(limit);
  const stderr = new CappedOutput(limit);
  const startedAt = performance.now();
  if (options.signal?.aborted) {
    return { exitCode: 130, signal: null, stdout: '', stderr: 'aborted before start', durationMs: 0, timedOut: false, aborted: true };
  }
  let timedOut = false;
  let aborted = false;
  let child: P | null = null;
  // Armed before the start, which counts against the deadline too (a remote start is a round trip).
  const timer = setTimeout(() => {
    timedOut = true;
    void child?.kill();
  }, options.timeoutMs);
  const onAbort = () => {
    aborted = true;
    void child?.kill();
  };
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    child = await start({
      ...(options.cwd ? { cwd: options.cwd } : {}),
      ...(options.env ? { env: options.env } : {}),
      onStdout: (chunk) => {
        stdout.push(chunk);
        options.onStdout?.(chunk);
      },
      onStderr: (chunk) => {
        stderr.push(chunk);
        options.onStderr?.(chunk);
      },
    });
    if (timedOut || aborted) void child.kill();
    else if (options.stdin !== undefined) {
      await child.write(options.stdin);
      await child.endInput();
    }
    const exit = await child.exited;
    await afterExit?.(child, timedOut || aborted);
    return {
      exitCode: exit.exitCode,
      signal: exit.signal,
      stdout: stdout.toString(),
      stderr: stderr.toString(),
      durationMs: performance.now() - startedAt,
      timedOut,
      aborted,
    };
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
  }
}
