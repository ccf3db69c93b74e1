/**
 * bench:rollout (warm pool): the same fizzbuzz rollout with the scripted model, one at a time, on a runtime without a
 * pool (cold, the baseline) and on one with OPENCODE_ENV_WARM_POOL=2, measured in the same run:
 *  - call -> first LLM request, p50 (target: <= 0.5 s warm);
 *  - rollouts per minute at concurrency 1, and machine CPU per rollout (the pool's refills included);
 *  - the idle pool's memory: resident set of its opencode serve, driver and bridge processes;
 *  - the peak resident set of every opencode-side process (waiting entries, the agent running, bridges) while the
 *    rollouts ran, sampled every 200 ms: what a pool costs in memory on top of the rollouts' own.
 * Sizes: BENCH_WARM_ROLLOUTS rollouts per setting (default 6). The first warm rollout points the pool at the
 * rollout's settings and is not counted.
 */
import { readdirSync, readFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../src/config.js';
import { rolloutRequestSchema } from '../src/core/rollout/schema.js';
import { createLogger } from '../src/log.js';
import { createRuntime } from '../src/runtime.js';
import { loadScript } from '../src/scripted-llm/script.js';
import { startScriptedLlm } from '../src/scripted-llm/server.js';
import { fmtMs, median, percentile, printTable, machineBusySeconds } from './stats.js';

const ROLLOUTS = Number(process.env.BENCH_WARM_ROLLOUTS ?? 6);
const POOL = 2;
const repo = path.resolve(import.meta.dirname, '..');
const scratch = mkdtempSync(path.join(os.tmpdir(), 'opencode-env-bench-warm-'));

/** Resident memory of every process whose command line matches, in MiB, and how many there are. */
function residentMiB(pattern: RegExp): { mib: number; processes: number } {
  let kib = 0;
  let processes = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!pattern.test(readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' '))) continue;
      const rss = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${entry}/status`, 'utf8'));
      kib += Number(rss?.[1] ?? 0);
      processes++;
    } catch {
      // gone in between
    }
  }
  return { mib: kib / 1024, processes };
}

interface SettingResult {
  firstRequestMs: number[];
  warmStarts: number;
  rolloutsPerMinute: number;
  cpuPerRollout: number;
  rewarded: number;
  peakMiB: number;
}

/** Every process on the agent's side: opencode (run or serve), the warm driver, the LLM bridges. */
const AGENT_SIDE = /opencode(\.exe)? (run|serve)|opencode-serve-driver|llm-bridge/;

async function measure(pool: number): Promise<{ result: SettingResult; idlePool: { mib: number; processes: number } | null }> {
  const llm = await startScriptedLlm({ script: await loadScript(path.join(repo, 'resources/examples/fizzbuzz/script.json')) });
  const task = JSON.parse(readFileSync(path.join(repo, 'resources/examples/fizzbuzz/task.json'), 'utf8')) as Record<string, unknown>;
  const config = loadConfig({
    ...process.env,
    OPENCODE_ENV_SANDBOX: 'local',
    OPENCODE_ENV_SANDBOX_DIR: path.join(scratch, `sandboxes-${pool}`),
    OPENCODE_ENV_DATA_DIR: path.join(scratch, `data-${pool}`),
    OPENCODE_ENV_WARM_POOL: String(pool),
  });
  const runtime = createRuntime(config, createLogger('warn'));
  const spec = (id: string) => rolloutRequestSchema.parse({ ...task, task_id: id, base_url: llm.url, model: 'scripted-model' });
  const runOne = async (id: string) => {
    const before = llm.requests.length;
    const started = performance.now();
    let firstRequestMs = NaN;
    const watch = setInterval(() => {
      if (Number.isNaN(firstRequestMs) && llm.requests.length > before) firstRequestMs = performance.now() - started;
    }, 1);
    const result = await runtime.rollouts.run(spec(id));
    clearInterval(watch);
    return { result, firstRequestMs };
  };
  let idlePool: { mib: number; processes: number } | null = null;
  try {
    if (pool > 0) {
      // Points the pool at these settings; then the pool is given the time to fill, and its idle memory is read.
      await runOne('prime');
      await new Promise((resolve) => setTimeout(resolve, 20_000));
      idlePool = residentMiB(/opencode serve|opencode-serve-driver|llm-bridge/);
    }
    const firstRequestMs: number[] = [];
    let warmStarts = 0;
    let rewarded = 0;
    let peakMiB = 0;
    const sampler = setInterval(() => (peakMiB = Math.max(peakMiB, residentMiB(AGENT_SIDE).mib)), 200);
    const cpu0 = machineBusySeconds();
    const started = performance.now();
    for (let i = 0; i < ROLLOUTS; i++) {
      const { result, firstRequestMs: ms } = await runOne(`r${i}`);
      firstRequestMs.push(ms);
      if (result.warm_start) warmStarts++;
      if (result.reward === 1) rewarded++;
    }
    const wallMs = performance.now() - started;
    clearInterval(sampler);
    return {
      result: {
        firstRequestMs,
        warmStarts,
        rolloutsPerMinute: ROLLOUTS / (wallMs / 60_000),
        cpuPerRollout: (machineBusySeconds() - cpu0) / ROLLOUTS,
        rewarded,
        peakMiB,
      },
      idlePool,
    };
  } finally {
    // Every cleanup, as at exit (the pool's first, then the sandboxes), without exiting.
    await runtime.lifecycle.close();
    await llm.close();
  }
}

async function main(): Promise<void> {
  const cold = await measure(0);
  const warm = await measure(POOL);
  console.log(
    `\nmachine: ${os.cpus().length} cores, node ${process.version}; fizzbuzz with the scripted model, ${ROLLOUTS} rollouts each, one at a time\n`,
  );
  const row = (name: string, r: SettingResult) => [
    name,
    `${r.rewarded}/${ROLLOUTS}`,
    `${r.warmStarts}/${ROLLOUTS}`,
    fmtMs(median(r.firstRequestMs)),
    fmtMs(percentile(r.firstRequestMs, 90)),
    r.rolloutsPerMinute.toFixed(1),
    `${r.cpuPerRollout.toFixed(2)} s`,
    `${r.peakMiB.toFixed(0)} MiB`,
  ];
  printTable(
    [
      'setting',
      'reward 1',
      'warm starts',
      'call -> first LLM request p50',
      'p90',
      'rollouts/min (c=1)',
      'machine CPU / rollout',
      'peak RSS, agent side',
    ],
    [row('cold (baseline, pool 0)', cold.result), row(`warm (pool ${POOL})`, warm.result)],
  );
  const ratio = median(cold.result.firstRequestMs) / median(warm.result.firstRequestMs);
  const warmP50 = median(warm.result.firstRequestMs);
  console.log(
    `\nfirst LLM request: warm p50 ${fmtMs(warmP50)} (target <= 500 ms: ${warmP50 <= 500 ? 'met' : 'not met'}), ${ratio.toFixed(1)}x sooner than cold;` +
      ` rollouts/min ${(warm.result.rolloutsPerMinute / cold.result.rolloutsPerMinute).toFixed(2)}x cold`,
  );
  if (warm.idlePool) {
    console.log(
      `idle pool of ${POOL}: ${warm.idlePool.mib.toFixed(0)} MiB resident in ${warm.idlePool.processes} processes (serve, driver, bridge), ${(warm.idlePool.mib / POOL).toFixed(0)} MiB per entry`,
    );
  }
  rmSync(scratch, { recursive: true, force: true });
}

await main();
