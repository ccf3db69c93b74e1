/**
 * bench:batch: the batch runner (src/batch/run.ts) on the real runtime, as `opencode-env batch` drives it, with
 * the fizzbuzz task and the scripted model, at concurrency 1, 2 and 4:
 *  - rollouts per minute;
 *  - CPU per rollout: the whole machine's busy CPU (/proc/stat, so other load on the machine counts too) and the
 *    batch process's own (runner, recording proxies, sandbox management);
 *  - the runner's own overhead per rollout: worker time outside runtime.rollouts.run (planning, writing and
 *    fsyncing the result line, bookkeeping), against the rollout's wall time. Target: under 1%.
 * Sizes: BENCH_BATCH_ROLLOUTS rollouts per concurrency level (default 8).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { selfCpuSeconds } from '../src/batch/cpu.js';
import { planPairs } from '../src/batch/plan.js';
import { ResultsWriter } from '../src/batch/results.js';
import { runBatch } from '../src/batch/run.js';
import { loadConfig } from '../src/config.js';
import { rolloutRequestSchema } from '../src/core/rollout/schema.js';
import { createLogger } from '../src/log.js';
import { createRuntime } from '../src/runtime.js';
import { loadScript } from '../src/scripted-llm/script.js';
import { startScriptedLlm } from '../src/scripted-llm/server.js';
import { fmtMs, printTable, machineBusySeconds } from './stats.js';

const ROLLOUTS = Number(process.env.BENCH_BATCH_ROLLOUTS ?? 8);
const LEVELS = [1, 2, 4];
const repo = path.resolve(import.meta.dirname, '..');
const scratch = mkdtempSync(path.join(os.tmpdir(), 'opencode-env-bench-batch-'));

async function main(): Promise<void> {
  const llm = await startScriptedLlm({ script: await loadScript(path.join(repo, 'resources/examples/fizzbuzz/script.json')) });
  const task = JSON.parse(readFileSync(path.join(repo, 'resources/examples/fizzbuzz/task.json'), 'utf8')) as Record<string, unknown>;
  const config = loadConfig({
    ...process.env,
    OPENCODE_ENV_SANDBOX: 'local',
    OPENCODE_ENV_SANDBOX_DIR: path.join(scratch, 'sandboxes'),
    OPENCODE_ENV_DATA_DIR: path.join(scratch, 'data'),
    MAX_CONCURRENT_ENVS: String(Math.max(...LEVELS)),
  });
  const runtime = createRuntime(config, createLogger('warn'));
  const rows: string[][] = [];
  try {
    for (const concurrency of LEVELS) {
      // As many tasks as rollouts, one sample each: the runner's work per rollout is the same either way.
      const taskIds = Array.from({ length: ROLLOUTS }, (_, i) => `fizzbuzz-${i}`);
      const specs = new Map(
        taskIds.map((id) => [id, rolloutRequestSchema.parse({ ...task, task_id: id, base_url: llm.url, model: 'scripted-model' })]),
      );
      const writer = await ResultsWriter.open(path.join(scratch, `results-c${concurrency}.jsonl`));
      let rewarded = 0;
      const machine0 = machineBusySeconds();
      const self0 = selfCpuSeconds();
      const started = performance.now();
      const stats = await runBatch({
        specs,
        pairs: planPairs(taskIds, 1),
        concurrency,
        retries: 0,
        rollouts: runtime.rollouts,
        signal: new AbortController().signal,
        onLine: async (line) => {
          await writer.append(line);
          if (line.reward === 1) rewarded++;
        },
      });
      const wallMs = performance.now() - started;
      await writer.close();
      const perRollout = (value: number) => value / stats.rollouts;
      const overheadMs = perRollout(stats.overheadMs);
      const rolloutMs = perRollout(stats.inRolloutMs);
      rows.push([
        `c=${concurrency}`,
        `${stats.completed} (${rewarded} rewarded)`,
        (stats.completed / (wallMs / 60_000)).toFixed(1),
        `${perRollout(machineBusySeconds() - machine0).toFixed(2)} s`,
        `${perRollout(selfCpuSeconds() - self0).toFixed(3)} s`,
        fmtMs(rolloutMs),
        fmtMs(overheadMs),
        `${((overheadMs / rolloutMs) * 100).toFixed(3)}%`,
        overheadMs / rolloutMs < 0.01 ? 'yes' : 'no',
      ]);
    }
  } finally {
    await runtime.provider.killAll();
    await llm.close();
  }
  console.log(
    `\nmachine: ${os.cpus().length} cores, node ${process.version}; fizzbuzz with the scripted model, ${ROLLOUTS} rollouts per level\n`,
  );
  printTable(
    [
      'setting',
      'rollouts',
      'rollouts/min',
      'machine CPU / rollout',
      'batch process CPU / rollout',
      'rollout wall',
      'runner overhead / rollout',
      'of rollout wall',
      '< 1%',
    ],
    rows,
  );
  rmSync(scratch, { recursive: true, force: true });
}

await main();
