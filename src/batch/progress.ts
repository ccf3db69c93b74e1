import type { ResultLine } from './results.js';

/** What the progress line shows; counts cover this run only (a resumed batch starts from what was done). */
export interface ProgressState {
  total: number;
  /** Pairs done before this run (resume). */
  doneBefore: number;
  done: number;
  running: number;
  rewardSum: number;
  rewarded: number;
  failures: Record<string, number>;
  retries: number;
  startedMs: number;
}

export function newProgressState(total: number, doneBefore: number, startedMs: number): ProgressState {
  return { total, doneBefore, done: 0, running: 0, rewardSum: 0, rewarded: 0, failures: {}, retries: 0, startedMs };
}

export function recordLine(state: ProgressState, line: ResultLine): void {
  state.done++;
  if (line.reward !== null) {
    state.rewardSum += line.reward;
    state.rewarded++;
  }
  if (line.error_kind) state.failures[line.error_kind] = (state.failures[line.error_kind] ?? 0) + 1;
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** One line: done/total, rate, ETA, mean reward so far, failures by kind. Pure, for tests. */
export function formatProgress(state: ProgressState, nowMs: number, barWidth = 0): string {
  const doneAll = state.doneBefore + state.done;
  const elapsedMin = Math.max(1e-9, (nowMs - state.startedMs) / 60_000);
  const perMinute = state.done / elapsedMin;
  const remaining = state.total - doneAll;
  const eta = state.done > 0 ? duration((remaining / perMinute) * 60) : '?';
  const failures = Object.entries(state.failures).map(([kind, count]) => `${kind}:${count}`);
  const parts = [
    `${doneAll}/${state.total}`,
    `${state.running} running`,
    `${perMinute.toFixed(1)}/min`,
    `ETA ${remaining === 0 ? '0s' : eta}`,
    `reward ${state.rewarded ? (state.rewardSum / state.rewarded).toFixed(3) : '-'}`,
    `failures ${failures.length ? failures.join(' ') : '0'}`,
    ...(state.retries ? [`retries ${state.retries}`] : []),
  ];
  const bar = barWidth > 0 ? `[${'#'.repeat(Math.round((doneAll / Math.max(1, state.total)) * barWidth)).padEnd(barWidth, '.')}] ` : '';
  return `batch ${bar}${parts.join(' | ')}`;
}

export interface ProgressOutput {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/**
 * Shows progress on stderr: at a terminal, one line redrawn in place (at most 4 times a second);
 * elsewhere (a log file, CI) a plain line every `intervalMs` and a last one at the end.
 */
export class ProgressReporter {
  private timer: NodeJS.Timeout | null = null;
  private readonly tty: boolean;

  constructor(
    private readonly state: ProgressState,
    private readonly out: ProgressOutput,
    private readonly intervalMs = 10_000,
  ) {
    this.tty = out.isTTY === true;
  }

  start(): void {
    this.timer = setInterval(() => this.draw(), this.tty ? 250 : this.intervalMs);
    this.timer.unref();
    if (this.tty) this.draw();
  }

  /** Writes a message above the live line (or as a plain line). */
  note(message: string): void {
    this.out.write(this.tty ? `\r\x1b[2K${message}\n` : `${message}\n`);
    if (this.tty) this.draw();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.out.write(this.tty ? `\r\x1b[2K${this.line()}\n` : `${this.line()}\n`);
  }

  private line(): string {
    return formatProgress(this.state, performance.now(), this.tty ? 20 : 0);
  }

  private draw(): void {
    if (!this.tty) {
      this.out.write(`${this.line()}\n`);
      return;
    }
    const width = this.out.columns || 120; // 0 when the terminal does not say
    this.out.write(`\r\x1b[2K${this.line().slice(0, Math.max(20, width - 1))}`);
  }
}
