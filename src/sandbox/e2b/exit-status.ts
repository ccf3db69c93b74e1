import os from 'node:os';
import type { ProcessExit } from '../types.js';

/** How Go (envd) spells the signals it reports in a process's status ("signal: killed"). */
const GO_SIGNAL_NAMES: Record<string, NodeJS.Signals> = {
  hangup: 'SIGHUP',
  interrupt: 'SIGINT',
  quit: 'SIGQUIT',
  'illegal instruction': 'SIGILL',
  aborted: 'SIGABRT',
  'bus error': 'SIGBUS',
  'floating point exception': 'SIGFPE',
  killed: 'SIGKILL',
  'segmentation fault': 'SIGSEGV',
  'broken pipe': 'SIGPIPE',
  'alarm clock': 'SIGALRM',
  terminated: 'SIGTERM',
};

function signalNumber(name: NodeJS.Signals): number {
  return os.constants.signals[name] ?? 9;
}

function signalNamed(exitCode: number): NodeJS.Signals | null {
  const number = exitCode - 128;
  const found = Object.entries(os.constants.signals).find(([, value]) => value === number);
  return found ? (found[0] as NodeJS.Signals) : null;
}

/**
 * A process's exit as the local backend reports it, from what envd said. Our wrapper shell reports a signalled
 * program as bash does (128 + n); envd itself reports a signalled process (our shell, killed at a deadline) with a
 * negative exit code and a status such as "signal: killed". `killedByUs` covers an end envd never described.
 */
export function exitFromEnvd(exitCode: number | null, status: string | undefined, killedByUs: boolean): ProcessExit {
  if (exitCode !== null && exitCode >= 0) {
    const signal = exitCode > 128 ? signalNamed(exitCode) : null;
    return { exitCode, signal };
  }
  const described = /signal: ([a-z /0-9]+)/.exec(status ?? '')?.[1]?.trim();
  const signal = (described && GO_SIGNAL_NAMES[described]) || (killedByUs || exitCode !== null ? 'SIGKILL' : null);
  if (signal) return { exitCode: 128 + signalNumber(signal), signal };
  return { exitCode: 1, signal: null };
}
