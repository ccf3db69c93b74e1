import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { childrenCpuSeconds, selfCpuSeconds } from '../batch/cpu.js';
import { loadDataset } from '../batch/dataset.js';
import { pendingPairs, planPairs } from '../batch/plan.js';
import { newProgressState, ProgressReporter, recordLine } from '../batch/progress.js';
import { donePairs, readResults, ResultsWriter, type ResultLine } from '../batch/results.js';
import { DEFAULT_BACKOFF } from '../batch/retry.js';
import { runBatch } from '../batch/run.js';
import { formatSummary, summarize } from '../batch/summary.js';
import { writeBatchTokens } from '../batch/tokens-file.js';
import { loadConfig } from '../config.js';
import { InvalidInputError } from '../errors.js';
import { createLogger } from '../log.js';
import { createRuntime } from '../runtime.js';
import { prepareHarborTemplates } from './harbor-templates.js';
import { loadScript } from '../scripted-llm/script.js';
import { startScriptedLlm, type ScriptedLlm } from '../scripted-llm/server.js';

export interface BatchCommandOptions {
  samples: string;
  concurrency: string;
  out: string;
  retries?: string;
  resume?: boolean;
  retryDelayMs?: string;
  progressInterval?: string;
  scriptedLlm?: string;
  endpoint?: string;
  baseUrl?: string;
  model?: string;
  apiKeyEnv?: string;
  agent?: string;
}

function integer(name: string, value: string | undefined, min: number, max: number, fallback?: number): number {
  if (value === undefined && fallback !== undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new InvalidInputError(`${name} must be an integer from ${min} to ${max}`);
  return n;
}

/** The command line's endpoint choices, applied on top of every task. */
function overridesFrom(options: BatchCommandOptions, scripted: ScriptedLlm | null): Record<string, unknown> {
  const overrides: Record<string, unknown> = {};
  if (scripted) Object.assign(overrides, { base_url: scripted.url, model: 'scripted-model' });
  if (options.endpoint) overrides.endpoint = options.endpoint;
  if (options.baseUrl) overrides.base_url = options.baseUrl;
  if (options.model) overrides.model = options.model;
  if (options.agent) overrides.agent = options.agent;
  if (options.apiKeyEnv) {
    const key = process.env[options.apiKeyEnv];
    if (!key) throw new InvalidInputError(`--api-key-env ${options.apiKeyEnv}: that environment variable is not set`);
    overrides.api_key = key;
  }
  return overrides;
}

/** Written whole or not at all: a crash mid-write never leaves half a summary. */
async function writeJsonAtomically(file: string, value: unknown): Promise<void> {
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(value, null, 2)}\n`);
  await rename(temporary, file);
}

/**
 * `opencode-env batch`: K samples of every task of a dataset, N at a time, through the same rollout core
 * as run_rollout. Each rollout's line is appended to DIR/results.jsonl the moment it ends, so a crash
 * loses only the rollouts in flight and --resume picks up where it stopped; DIR/summary.json at the end.
 */
export async function runBatchCommand(dataset: string, options: BatchCommandOptions): Promise<number> {
  const samples = integer('--samples', options.samples, 1, 100_000);
  const concurrency = integer('--concurrency', options.concurrency, 1, 256);
  const retries = integer('--retries', options.retries, 0, 100, 0);
  const retryDelayMs = integer('--retry-delay-ms', options.retryDelayMs, 0, 3_600_000, DEFAULT_BACKOFF.baseMs);
  const progressIntervalMs = integer('--progress-interval', options.progressInterval, 1, 86_400, 10) * 1000;

  const scripted = options.scriptedLlm ? await startScriptedLlm({ script: await loadScript(options.scriptedLlm) }) : null;
  try {
    const { kind, tasks } = await loadDataset(dataset, overridesFrom(options, scripted));
    const resultsFile = path.join(options.out, 'results.jsonl');
    const summaryFile = path.join(options.out, 'summary.json');
    await mkdir(options.out, { recursive: true });
    const recorded = await readResults(resultsFile);
    if (recorded.lines.length > 0 && !options.resume) {
      throw new InvalidInputError(
        `${resultsFile} already holds ${recorded.lines.length} results: add --resume to continue that batch, or choose another --out`,
      );
    }
    const taskIds = tasks.map((task) => task.taskId);
    const plan = planPairs(taskIds, samples);
    const pending = pendingPairs(plan, donePairs(recorded.lines));
    const doneBefore = plan.length - pending.length;
    process.stderr.write(
      `batch: ${tasks.length} tasks (${kind}) x ${samples} samples = ${plan.length} rollouts` +
        `${doneBefore ? `, ${doneBefore} already done` : ''}${recorded.tornBytes ? ' (a torn last line was dropped)' : ''}\n`,
    );
    if (pending.length === 0) {
      process.stderr.write(`batch: nothing to do; results in ${resultsFile}\n`);
      return 0;
    }

    const config = loadConfig({ ...process.env, MAX_CONCURRENT_ENVS: String(concurrency) });
    // Only for tasks with rollouts still to run: a finished batch run again builds nothing.
    const pendingTasks = new Set(pending.map((pair) => pair.taskId));
    const templates = await prepareHarborTemplates(
      config,
      tasks.flatMap(({ taskId, harborEnvironment }) =>
        harborEnvironment && pendingTasks.has(taskId) ? [{ taskId, environment: harborEnvironment }] : [],
      ),
    );
    const specs = new Map(tasks.map((task) => [task.taskId, { ...task.spec, ...templates.get(task.taskId) }]));
    const level = process.env.OPENCODE_ENV_LOG_LEVEL ? config.logLevel : 'warn';
    const runtime = createRuntime(config, createLogger(level, 'human'));
    runtime.lifecycle.installProcessHandlers();
    try {
      const startedMs = performance.now();
      const cpuSelf0 = selfCpuSeconds();
      const cpuChildren0 = childrenCpuSeconds();
      const writer = await ResultsWriter.open(resultsFile);
      const state = newProgressState(plan.length, doneBefore, startedMs);
      const progress = new ProgressReporter(state, process.stderr, progressIntervalMs);
      const lines: ResultLine[] = [...recorded.lines];
      const abort = new AbortController();
      progress.start();
      const batch = runBatch({
        specs,
        pairs: pending,
        concurrency,
        retries,
        backoff: { ...DEFAULT_BACKOFF, baseMs: retryDelayMs },
        rollouts: runtime.rollouts,
        signal: abort.signal,
        onLine: async (line) => {
          await writer.append(line);
          lines.push(line);
          recordLine(state, line);
        },
        onRolloutStart: () => void state.running++,
        onRolloutEnd: () => void state.running--,
        onRetry: (pair, attempt, result, delayMs) => {
          state.retries++;
          progress.note(
            `retrying ${pair.taskId} sample ${pair.sample} in ${(delayMs / 1000).toFixed(1)} s (attempt ${attempt} failed: ${result.error_kind}: ${result.error})`,
          );
        },
      });
      // Ctrl-C or SIGTERM: the rollouts in flight are cancelled (storing their traces) and not recorded, so --resume reruns them.
      runtime.lifecycle.onShutdown('batch', async () => {
        abort.abort();
        const stats = await batch.catch(() => null);
        progress.stop();
        await writer.close().catch(() => undefined);
        process.stderr.write(
          `batch: stopped; ${stats?.completed ?? 0} rollouts recorded by this run, ${stats?.cancelled ?? '?'} left: run again with --resume to finish\n`,
        );
      });
      const stats = await batch;
      // Stopped by a signal: the shutdown cleanup above reports and the process exits there.
      if (abort.signal.aborted) return 130;
      progress.stop();
      await writer.close();
      const summary = summarize(lines, taskIds, samples, {
        rollouts_run: stats.rollouts,
        wall_s: Math.round(performance.now() - startedMs) / 1000,
        cpu_self_s: Math.round((selfCpuSeconds() - cpuSelf0) * 1000) / 1000,
        cpu_children_s: cpuChildren0 === null ? null : Math.round((childrenCpuSeconds()! - cpuChildren0) * 100) / 100,
      });
      await writeJsonAtomically(summaryFile, summary);
      process.stdout.write(formatSummary(summary));
      // The training data, as `traces export --format tokens` gives it, for this batch's rollouts only.
      const tokensFile = path.join(options.out, 'tokens.jsonl');
      const tokens = await writeBatchTokens(runtime.traces, new Set(lines.map((line) => line.rollout_id)), tokensFile);
      process.stderr.write(
        `batch: ${tokens.sequences} training sequences from ${tokens.rollouts} rollouts in ${tokensFile}` +
          ` (${tokens.prefixBreaks} prefix breaks, ${tokens.flagged} flagged without token ids)\n` +
          `batch: results in ${resultsFile}, summary in ${summaryFile}, traces in ${runtime.traces.dir}\n`,
      );
      return 0;
    } finally {
      await runtime.provider.killAll();
    }
  } catch (error) {
    if (!(error instanceof InvalidInputError)) throw error;
    process.stderr.write(`opencode-env: ${error.message}\n`);
    return 1;
  } finally {
    await scripted?.close();
  }
}
