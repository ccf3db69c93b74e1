import type { ResultLine } from './results.js';

/**
 * A rollout counts as correct for pass@k when its reward is at least this. Rewards are pass fractions
 * (verify commands passed / total, or a test_script's 0/1), so only a full pass is a pass.
 */
const PASS_THRESHOLD = 1;

/**
 * The unbiased pass@k estimator (Chen et al. 2021): the chance that k of the n samples, drawn without
 * replacement, include at least one of the c correct ones: 1 - C(n-c, k) / C(n, k). Computed as a
 * product, which neither overflows nor loses precision. null when fewer than k samples exist.
 */
export function passAtK(n: number, c: number, k: number): number | null {
  if (k < 1 || n < k) return null;
  if (n - c < k) return 1;
  let allWrong = 1;
  for (let i = n - c + 1; i <= n; i++) allWrong *= 1 - k / i;
  return 1 - allWrong;
}

interface GroupStats {
  rollouts: number;
  /** Rollouts that got a reward (those with an error have none). */
  rewarded: number;
  /** Mean over rewarded rollouts; null when none was. */
  mean_reward: number | null;
  /** Rollouts with reward >= PASS_THRESHOLD. */
  correct: number;
  /** pass@1 and pass@K (K = the batch's samples), keyed "pass@1", "pass@K". Errors count as not correct. */
  pass_at: Record<string, number | null>;
  /** Rollouts that ended with an error, by error_kind, and their share of all rollouts. */
  errors: Record<string, number>;
  error_rate: number;
  budget_exhausted: number;
  agent_timed_out: number;
  /** Retries spent: attempts beyond the first. */
  retries: number;
  prompt_tokens: number;
  completion_tokens: number;
  /** Sum of the rollouts' own wall times (they overlap when run concurrently). */
  rollout_wall_s: number;
}

export interface BatchSummary {
  samples: number;
  pass_threshold: number;
  tasks: Record<string, GroupStats>;
  /** pass@k over all tasks is the mean of the tasks' pass@k (tasks with fewer than k samples left out). */
  overall: GroupStats & { tasks: number };
  run: RunCost;
}

/** What this invocation of the batch cost (a resumed batch counts only its own run). */
export interface RunCost {
  rollouts_run: number;
  wall_s: number;
  /** CPU seconds of the batch process itself (the runner, recording proxies, sandbox management). */
  cpu_self_s: number;
  /**
   * CPU seconds of the child processes it reaped (/proc/self/stat cutime + cstime), on Linux; null elsewhere.
   * A lower bound: processes killed with their sandbox are never reaped into it, and E2B's run remotely.
   */
  cpu_children_s: number | null;
}

function kValues(samples: number): number[] {
  return samples > 1 ? [1, samples] : [1];
}

function round(value: number, digits = 4): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

function groupStats(lines: readonly ResultLine[], samples: number): GroupStats {
  const rewards = lines.flatMap((line) => (line.reward === null ? [] : [line.reward]));
  const correct = rewards.filter((reward) => reward >= PASS_THRESHOLD).length;
  const errors: Record<string, number> = {};
  for (const line of lines) if (line.error_kind) errors[line.error_kind] = (errors[line.error_kind] ?? 0) + 1;
  const failed = Object.values(errors).reduce((a, b) => a + b, 0);
  const pass = Object.fromEntries(kValues(samples).map((k) => [`pass@${k}`, nullableRound(passAtK(lines.length, correct, k))]));
  return {
    rollouts: lines.length,
    rewarded: rewards.length,
    mean_reward: rewards.length ? round(rewards.reduce((a, b) => a + b, 0) / rewards.length) : null,
    correct,
    pass_at: pass,
    errors,
    error_rate: lines.length ? round(failed / lines.length) : 0,
    budget_exhausted: lines.filter((line) => line.budget_exhausted).length,
    agent_timed_out: lines.filter((line) => line.agent_timed_out).length,
    retries: lines.reduce((sum, line) => sum + Math.max(0, line.attempts - 1), 0),
    prompt_tokens: lines.reduce((sum, line) => sum + line.prompt_tokens, 0),
    completion_tokens: lines.reduce((sum, line) => sum + line.completion_tokens, 0),
    rollout_wall_s: round(
      lines.reduce((sum, line) => sum + line.wall_s, 0),
      3,
    ),
  };
}

function nullableRound(value: number | null): number | null {
  return value === null ? null : round(value);
}

/** The summary of every recorded line of the batch's tasks, per task (in dataset order) and overall. */
export function summarize(lines: readonly ResultLine[], taskIds: readonly string[], samples: number, run: RunCost): BatchSummary {
  const byTask = new Map<string, ResultLine[]>(taskIds.map((id) => [id, []]));
  for (const line of lines) byTask.get(line.task_id)?.push(line);
  const tasks = Object.fromEntries([...byTask].map(([id, taskLines]) => [id, groupStats(taskLines, samples)]));
  const overall = groupStats([...byTask.values()].flat(), samples);
  // Overall pass@k is per task, then averaged: pooling all samples would mix tasks into one group.
  for (const k of kValues(samples)) {
    const values = Object.values(tasks).flatMap((stats) => {
      const value = passAtK(stats.rollouts, stats.correct, k);
      return value === null ? [] : [value];
    });
    overall.pass_at[`pass@${k}`] = values.length ? round(values.reduce((a, b) => a + b, 0) / values.length) : null;
  }
  return { samples, pass_threshold: PASS_THRESHOLD, tasks, overall: { ...overall, tasks: taskIds.length }, run };
}

function fmt(value: number | null | undefined, digits = 3): string {
  return value === null || value === undefined ? '-' : value.toFixed(digits);
}

function errorsText(errors: Record<string, number>): string {
  const entries = Object.entries(errors);
  return entries.length ? entries.map(([kind, count]) => `${kind}:${count}`).join(' ') : '-';
}

/** The summary as a fixed-width table for a terminal: one row per task, then the overall row, then the run's cost. */
export function formatSummary(summary: BatchSummary, maxTaskRows = 50): string {
  const kKeys = kValues(summary.samples).map((k) => `pass@${k}`);
  const headers = ['task', 'n', 'mean reward', ...kKeys, 'errors', 'tokens in', 'tokens out'];
  const row = (name: string, stats: GroupStats): string[] => [
    name,
    String(stats.rollouts),
    fmt(stats.mean_reward),
    ...kKeys.map((key) => fmt(stats.pass_at[key])),
    errorsText(stats.errors),
    String(stats.prompt_tokens),
    String(stats.completion_tokens),
  ];
  const taskEntries = Object.entries(summary.tasks);
  const rows = taskEntries.slice(0, maxTaskRows).map(([id, stats]) => row(id, stats));
  if (taskEntries.length > maxTaskRows) rows.push([`... ${taskEntries.length - maxTaskRows} more tasks in summary.json`]);
  rows.push(row(`overall (${summary.overall.tasks} tasks)`, summary.overall));
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  const { run, overall } = summary;
  const cpu = `cpu ${run.cpu_self_s.toFixed(1)} s (batch process)${run.cpu_children_s === null ? '' : ` + ${run.cpu_children_s.toFixed(1)} s (child processes)`}`;
  return [
    line(headers),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.slice(0, -1).map(line),
    line(widths.map((w) => '-'.repeat(w))),
    line(rows[rows.length - 1]!),
    '',
    `error rate ${(overall.error_rate * 100).toFixed(1)}%, ${overall.retries} retries, ${overall.budget_exhausted} budget-ended, ${overall.agent_timed_out} agent timeouts; correct = reward >= ${summary.pass_threshold}`,
    `this run: ${run.rollouts_run} rollouts in ${run.wall_s.toFixed(1)} s wall, ${cpu}`,
    '',
  ].join('\n');
}
