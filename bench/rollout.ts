/**
 * bench:rollout, three measurements, each against a baseline taken in the same run:
 *  (a) the recording proxy's added time to first byte on a real 31 KB opencode request streaming 100 tokens
 *      with logprobs (vs calling the scripted model directly, asking for the same fields) and its throughput
 *      at 8 clients;
 *  (b) what a rollout costs beyond opencode's own run: wall time minus the agent phase, and the agent
 *      phase against opencode run by hand (no sandbox, bridge or proxy);
 *  (c) rollouts per minute at concurrency 1, 2 and 4.
 * Targets: (a) added first byte p50 <= 0.5 ms, throughput >= 0.8x direct; (b) <= 300 ms, (c) concurrency 4 >= 2x concurrency 1.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findOpencodeBinary } from '../src/core/rollout/opencode-binary.js';
import { OPENCODE_HOME_FILES, opencodeArgs, opencodeEnv } from '../src/core/rollout/opencode.js';
import { RolloutRunner } from '../src/core/rollout/run.js';
import { rolloutRequestSchema, type RolloutResult } from '../src/core/rollout/schema.js';
import { TraceStore } from '../src/core/traces.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { resourcesDir } from '../src/paths.js';
import { createSandboxProvider } from '../src/sandbox/factory.js';
import type { SandboxProvider } from '../src/sandbox/types.js';
import { tokenize } from '../src/scripted-llm/fake-tokens.js';
import { loadScript } from '../src/scripted-llm/script.js';
import { startScriptedLlm } from '../src/scripted-llm/server.js';
import { Semaphore } from '../src/util/semaphore.js';
import { fmtMs, median, percentile, printTable, machineBusySeconds } from './stats.js';

const TURNS = Number(process.env.BENCH_PROXY_TURNS ?? 300);
const ROLLOUTS = Number(process.env.BENCH_ROLLOUTS ?? 5);
const scratch = mkdtempSync(path.join(os.tmpdir(), 'opencode-env-bench-'));
const repo = path.resolve(import.meta.dirname, '..');

/**
 * (a): a real opencode request (31 KB: system prompt, tools, one tool round trip) answered with 100 streamed
 * tokens carrying logprobs and token ids. The direct baseline asks for exactly what the proxy injects, so the
 * model does the same work and streams the same bytes either way.
 */
const proxyRequest = JSON.parse(readFileSync(path.join(import.meta.dirname, 'fixtures/opencode-request-31k.json'), 'utf8')) as Record<
  string,
  unknown
>;
const directRequest = { ...proxyRequest, logprobs: true, top_logprobs: 5, return_token_ids: true };
const DIRECT_BODY = JSON.stringify(directRequest);
const PROXIED_BODY = JSON.stringify(proxyRequest);
/** 50 words and 50 spaces: 100 tokens for the scripted model's tokenizer. */
const TURN_TEXT = Array.from({ length: 50 }, (_, i) => `word${i} `).join('');
const PROXY_CLIENTS = 8;
/** The build whose model and proxies (a) runs. */
const PROXY_CLI = process.env.BENCH_PROXY_CLI ?? path.join(repo, 'dist/cli.js');
/**
 * BENCH_BASELINE_CLI=/path/to/other/dist/cli.js: a recording proxy of another build (a copy of dist/ from before a change,
 * next to a package.json and node_modules) runs beside this one, interleaved, so both are measured under the same load.
 */
const BASELINE_CLI = process.env.BENCH_BASELINE_CLI || null;

interface TurnTiming {
  total: number;
  firstByte: number;
}

async function streamedTurn(url: string, body: string): Promise<TurnTiming> {
  const started = performance.now();
  const response = await fetch(`${url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const reader = response.body!.getReader();
  await reader.read();
  const firstByte = performance.now() - started;
  while (!(await reader.read()).done) {
    // drain
  }
  return { total: performance.now() - started, firstByte };
}

/**
 * Direct, recorded and relayed turns, interleaved so machine noise hits all alike; differences are paired. The
 * relay-only proxy (no parsing, no recording) is the floor: what one more HTTP hop costs on this machine.
 */
async function pairedTurns(
  urls: { direct: string; proxy: string; relay: string; baseline: string | null },
  count: number,
): Promise<{ direct: TurnTiming[]; proxied: TurnTiming[]; relayed: TurnTiming[]; baseline: TurnTiming[] }> {
  const direct: TurnTiming[] = [];
  const proxied: TurnTiming[] = [];
  const relayed: TurnTiming[] = [];
  const baseline: TurnTiming[] = [];
  for (let i = 0; i < count + 20; i++) {
    const d = await streamedTurn(urls.direct, DIRECT_BODY);
    const p = await streamedTurn(urls.proxy, PROXIED_BODY);
    const r = await streamedTurn(urls.relay, DIRECT_BODY);
    const b = urls.baseline ? await streamedTurn(urls.baseline, PROXIED_BODY) : null;
    if (i >= 20) {
      direct.push(d);
      proxied.push(p);
      relayed.push(r);
      if (b) baseline.push(b);
    }
  }
  return { direct, proxied, relayed, baseline };
}

/** Starts a CLI subcommand and returns the URL it prints on stdout, its pid, and a way to stop it. */
async function startCliServer(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  cli = PROXY_CLI,
): Promise<{ url: string; pid: number; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [cli, ...args], {
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) resolve(out.trim());
    });
    child.once('exit', (code) => reject(new Error(`${args[0]} exited with ${code}`)));
  });
  return {
    url,
    pid: child.pid!,
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
function processCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in USER_HZ
}

/**
 * The model and the proxy each in a process of their own, as in a real rollout (the proxy lives in the
 * server, the model elsewhere), so the proxy's work is not serialised with the model's on one event loop.
 */
async function startModelAndProxy(turn: Record<string, unknown>) {
  const scriptFile = path.join(scratch, `script-${Date.now()}.json`);
  // The request already holds one assistant message, so the scripted model answers it with its second turn.
  writeFileSync(scriptFile, JSON.stringify({ turns: [turn, turn] }));
  const model = await startCliServer(['scripted-llm', '--script', scriptFile]);
  const proxy = await startCliServer(['proxy', '--upstream', model.url, '--top-logprobs', '5', '--max-tokens-cap', '4096']);
  const relay = await startCliServer(['proxy', '--upstream', model.url, '--relay-only']);
  const baseline = BASELINE_CLI
    ? await startCliServer(['proxy', '--upstream', model.url, '--top-logprobs', '5', '--max-tokens-cap', '4096'], {}, BASELINE_CLI)
    : null;
  return {
    model,
    proxy,
    relay,
    baseline,
    stop: async () => {
      await baseline?.stop();
      await relay.stop();
      await proxy.stop();
      await model.stop();
    },
  };
}

/** Turns per second with `clients` clients each running turns back to back, and the CPU the given processes used per turn. */
async function throughput(url: string, body: string, pids: number[]): Promise<{ rate: number; cpuPerTurn: number[] }> {
  const perClient = 30;
  const cpuBefore = pids.map(processCpuSeconds);
  const started = performance.now();
  await Promise.all(
    Array.from({ length: PROXY_CLIENTS }, async () => {
      for (let i = 0; i < perClient; i++) await streamedTurn(url, body);
    }),
  );
  const turns = PROXY_CLIENTS * perClient;
  const rate = turns / ((performance.now() - started) / 1000);
  return { rate, cpuPerTurn: pids.map((pid, i) => ((processCpuSeconds(pid) - cpuBefore[i]!) * 1000) / turns) };
}

async function benchProxy(): Promise<string[][]> {
  const rows: string[][] = [];
  const diff = (a: TurnTiming[], b: TurnTiming[], key: keyof TurnTiming) => b.map((t, i) => t[key] - a[i]![key]);
  const p50p95 = (samples: number[]) => [fmtMs(median(samples)), fmtMs(percentile(samples, 95))];
  const tokens = tokenize(TURN_TEXT).length;
  const servers = await startModelAndProxy({ text: TURN_TEXT });
  try {
    const p = await pairedTurns(
      { direct: servers.model.url, proxy: servers.proxy.url, relay: servers.relay.url, baseline: servers.baseline?.url ?? null },
      TURNS,
    );
    const addedFirst = diff(p.direct, p.proxied, 'firstByte');
    const addedTotal = diff(p.direct, p.proxied, 'total');
    rows.push(
      [`time to first byte, direct (31 KB request, ${tokens} tokens)`, ...p50p95(p.direct.map((t) => t.firstByte)), '', ''],
      ['time to first byte, through the recording proxy', ...p50p95(p.proxied.map((t) => t.firstByte)), '', ''],
      [
        'added to time to first byte (paired differences)',
        ...p50p95(addedFirst),
        'p50 <= 0.5 ms',
        median(addedFirst) <= 0.5 ? 'yes' : 'NO',
      ],
      ['  floor: added by a relay-only proxy (the hop alone)', ...p50p95(diff(p.direct, p.relayed, 'firstByte')), '', ''],
      ...(servers.baseline
        ? [['  baseline build: added to time to first byte', ...p50p95(diff(p.direct, p.baseline, 'firstByte')), '', '']]
        : []),
      ['whole turn, direct', ...p50p95(p.direct.map((t) => t.total)), '', ''],
      ['whole turn, through the recording proxy', ...p50p95(p.proxied.map((t) => t.total)), '', ''],
      ['added per whole turn (paired differences)', ...p50p95(addedTotal), '', ''],
      ...(servers.baseline ? [['  baseline build: added per whole turn', ...p50p95(diff(p.direct, p.baseline, 'total')), '', '']] : []),
    );

    // Direct and proxied rounds alternate, so a burst of load from elsewhere hits both; the ratio is per round.
    // The relay-only proxy (no injection, parsing or recording) is the floor: what the hop itself costs.
    const ratios: number[] = [];
    const relayRatios: number[] = [];
    const directRates: number[] = [];
    const proxiedRates: number[] = [];
    const relayedRates: number[] = [];
    const modelCpu: number[] = [];
    const proxyCpu: number[] = [];
    const relayCpu: number[] = [];
    const baselineRatios: number[] = [];
    const baselineCpu: number[] = [];
    for (let round = 0; round < 3; round++) {
      const direct = await throughput(servers.model.url, DIRECT_BODY, [servers.model.pid]);
      const proxied = await throughput(servers.proxy.url, PROXIED_BODY, [servers.model.pid, servers.proxy.pid]);
      const relayed = await throughput(servers.relay.url, DIRECT_BODY, [servers.model.pid, servers.relay.pid]);
      directRates.push(direct.rate);
      proxiedRates.push(proxied.rate);
      relayedRates.push(relayed.rate);
      ratios.push(proxied.rate / direct.rate);
      relayRatios.push(relayed.rate / direct.rate);
      modelCpu.push(direct.cpuPerTurn[0]!);
      proxyCpu.push(proxied.cpuPerTurn[1]!);
      relayCpu.push(relayed.cpuPerTurn[1]!);
      if (servers.baseline) {
        const other = await throughput(servers.baseline.url, PROXIED_BODY, [servers.model.pid, servers.baseline.pid]);
        baselineRatios.push(other.rate / direct.rate);
        baselineCpu.push(other.cpuPerTurn[1]!);
      }
    }
    rows.push(
      [`throughput, ${PROXY_CLIENTS} clients: direct (turns/s, 3 rounds)`, median(directRates).toFixed(0), '', '', ''],
      ['throughput, through the recording proxy (turns/s)', median(proxiedRates).toFixed(0), '', '', ''],
      [
        'proxied / direct throughput (median of rounds)',
        `${median(ratios).toFixed(2)}x`,
        '',
        '>= 0.8x',
        median(ratios) >= 0.8 ? 'yes' : 'NO',
      ],
      ['  floor: throughput through a relay-only proxy (turns/s)', median(relayedRates).toFixed(0), '', '', ''],
      ['  floor: relay-only / direct throughput', `${median(relayRatios).toFixed(2)}x`, '', '', ''],
      ['CPU per turn: scripted model', fmtMs(median(modelCpu)), '', '', ''],
      ['CPU per turn: recording proxy', fmtMs(median(proxyCpu)), '', '', ''],
      ['  floor: CPU per turn, relay-only proxy (the hop alone)', fmtMs(median(relayCpu)), '', '', ''],
      ...(servers.baseline
        ? [
            ['  baseline build: proxied / direct throughput', `${median(baselineRatios).toFixed(2)}x`, '', '', ''],
            ['  baseline build: CPU per turn, recording proxy', fmtMs(median(baselineCpu)), '', '', ''],
          ]
        : []),
    );
  } finally {
    await servers.stop();
  }
  return rows;
}

function runner(concurrency: number, dataDir: string): { runner: RolloutRunner; provider: SandboxProvider } {
  const config = loadConfig({ ...process.env, OPENCODE_ENV_SANDBOX_DIR: scratch, OPENCODE_ENV_DATA_DIR: dataDir });
  const logger = createLogger('warn');
  const provider = createSandboxProvider(config.sandbox, {
    resourcesDir,
    hiddenPaths: [dataDir],
    binaries: () => ({ node: process.execPath, opencode: findOpencodeBinary(config.rollouts.opencodeBinary) }),
    logger,
  });
  const runner = new RolloutRunner({
    provider,
    traces: new TraceStore(path.join(dataDir, 'traces')),
    concurrency: new Semaphore(concurrency),
    endpoints: config.rollouts.endpoints,
    maxConsecutiveUpstreamFailures: config.rollouts.upstreamMaxFailures,
    maxRequestBytes: config.rollouts.maxRequestBytes,
    logger,
  });
  return { provider, runner };
}

async function opencodeByHand(baseUrl: string): Promise<number> {
  const home = mkdtempSync(path.join(scratch, 'home-'));
  for (const [file, content] of Object.entries(OPENCODE_HOME_FILES)) {
    mkdirSync(path.dirname(path.join(home, file)), { recursive: true });
    writeFileSync(path.join(home, file), content);
  }
  const workdir = path.join(home, 'workdir');
  mkdirSync(workdir);
  const settings = { model: 'scripted-model', maxTokensCap: 4096, baseUrl };
  const started = performance.now();
  const child = spawn(findOpencodeBinary(process.env.OPENCODE_ENV_OPENCODE_BIN ?? null), opencodeArgs('scripted-model'), {
    cwd: workdir,
    env: { PATH: process.env.PATH, HOME: home, ...opencodeEnv(settings, home) },
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  child.stdin.end('Write fizzbuzz.py');
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`opencode exited with ${code}`);
  return performance.now() - started;
}

async function benchRollouts(): Promise<{ overhead: string[][]; scaling: string[][] }> {
  const llm = await startScriptedLlm({ script: await loadScript(path.join(repo, 'resources/examples/fizzbuzz/script.json')) });
  const spec = rolloutRequestSchema.parse({
    instruction: 'Write fizzbuzz.py.',
    task_id: 'bench',
    verify: ['test -f fizzbuzz.py'],
    base_url: llm.url,
    model: 'scripted-model',
    agent_timeout_s: 300,
  });
  const dataDir = path.join(scratch, 'data');
  const { runner: sequential, provider } = runner(1, dataDir);
  await sequential.run(spec); // warm-up: host probe, page cache for the opencode binary

  const byHand: number[] = [];
  const results: RolloutResult[] = [];
  for (let i = 0; i < ROLLOUTS; i++) {
    byHand.push(await opencodeByHand(llm.url));
    const result = await sequential.run(spec);
    if (result.reward !== 1) throw new Error(`benchmark rollout failed: ${result.error}`);
    results.push(result);
  }
  await provider.killAll();
  const wall = results.map((r) => r.wall_s * 1000);
  const agent = results.map((r) => (r.timings.agent ?? 0) * 1000);
  const beyondAgent = results.map((r) => (r.wall_s - (r.timings.agent ?? 0)) * 1000);
  const agentVsHand = agent.map((a, i) => a - byHand[i]!);
  const overhead = [
    [`opencode run by hand, no sandbox or proxy (${ROLLOUTS} runs)`, fmtMs(median(byHand)), fmtMs(percentile(byHand, 95)), '', ''],
    ['rollout: agent phase (bwrap + bridge + proxy + opencode)', fmtMs(median(agent)), fmtMs(percentile(agent, 95)), '', ''],
    ['rollout: whole wall time', fmtMs(median(wall)), fmtMs(percentile(wall, 95)), '', ''],
    [
      'wall time minus the agent phase',
      fmtMs(median(beyondAgent)),
      fmtMs(percentile(beyondAgent, 95)),
      '<= 300 ms',
      median(beyondAgent) <= 300 ? 'yes' : 'NO',
    ],
    ['agent phase minus opencode by hand (paired, noisy)', fmtMs(median(agentVsHand)), fmtMs(percentile(agentVsHand, 95)), '', ''],
  ];

  const scaling: string[][] = [];
  let base = 0;
  for (const concurrency of [1, 2, 4]) {
    const { runner: parallel, provider: p } = runner(concurrency, dataDir);
    const count = Math.max(4, concurrency * 2);
    const started = performance.now();
    const busyBefore = machineBusySeconds();
    const batch = await Promise.all(Array.from({ length: count }, () => parallel.run(spec)));
    const minutes = (performance.now() - started) / 60_000;
    const cpuPerRollout = (machineBusySeconds() - busyBefore) / count;
    await p.killAll();
    const failed = batch.filter((r) => r.reward !== 1).length;
    const perMinute = count / minutes;
    if (concurrency === 1) base = perMinute;
    scaling.push([
      `concurrency ${concurrency} (${count} rollouts${failed ? `, ${failed} FAILED` : ''})`,
      `${perMinute.toFixed(1)}/min`,
      `${(perMinute / base).toFixed(2)}x`,
      `${cpuPerRollout.toFixed(1)} s`,
      `${((os.cpus().length / cpuPerRollout) * 60).toFixed(1)}/min`,
      concurrency === 4 ? '>= 2x of c=1' : '',
      concurrency === 4 ? (perMinute / base >= 2 ? 'yes' : 'NO') : '',
    ]);
  }
  await llm.close();
  return { overhead, scaling };
}

/** BENCH_ONLY=proxy runs part (a) alone, for quick iterations. */
const only = process.env.BENCH_ONLY;
try {
  console.log(`\nmachine: ${os.cpus().length} cores, node ${process.version}\n`);
  console.log('(a) recording proxy: streamed turns direct vs through the proxy, interleaved\n');
  printTable(['measure', 'p50', 'p95', 'target', 'met'], await benchProxy());
  if (only !== 'proxy') {
    const { overhead, scaling } = await benchRollouts();
    console.log(`\n(b) rollout cost beyond opencode itself (fizzbuzz, scripted model, ${ROLLOUTS} rollouts)\n`);
    printTable(['measure', 'median', 'p95', 'target', 'met'], overhead);
    console.log('\n(c) rollouts per minute (fizzbuzz, scripted model)\n');
    printTable(['setting', 'rollouts/min', 'vs c=1', 'CPU per rollout', 'CPU-bound ceiling', 'target', 'met'], scaling);
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
