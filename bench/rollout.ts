/**
 * bench:rollout, three measurements, each against a baseline taken in the same run:
 *  (a) the recording proxy's added latency per streamed turn (vs calling the scripted model directly,
 *      with the same logprob/token-id fields so the model does the same work) and its throughput;
 *  (b) what a rollout costs beyond opencode's own run: wall time minus the agent phase, and the agent
 *      phase against opencode run by hand (no sandbox, bridge or proxy);
 *  (c) rollouts per minute at concurrency 1, 2 and 4.
 * Targets: (a) p50 <= 1 ms, (b) <= 300 ms, (c) concurrency 4 >= 2x concurrency 1.
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
import { fmtMs, median, percentile, printTable } from './stats.js';

const TURNS = Number(process.env.BENCH_PROXY_TURNS ?? 300);
const ROLLOUTS = Number(process.env.BENCH_ROLLOUTS ?? 5);
const scratch = mkdtempSync(path.join(os.tmpdir(), 'opencode-env-bench-'));
const repo = path.resolve(import.meta.dirname, '..');

const TURN_TEXT = Array.from({ length: 60 }, (_, i) => `word${i}`).join(' ');
const chatBody = {
  model: 'scripted-model',
  stream: true,
  stream_options: { include_usage: true },
  tools: [{ type: 'function', function: { name: 'write', parameters: { type: 'object' } } }],
  messages: [
    { role: 'system', content: 'Working directory: /w' },
    { role: 'user', content: 'go' },
  ],
};

interface TurnTiming {
  total: number;
  firstByte: number;
}

async function streamedTurn(url: string, body: unknown): Promise<TurnTiming> {
  const started = performance.now();
  const response = await fetch(`${url}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const reader = response.body!.getReader();
  await reader.read();
  const firstByte = performance.now() - started;
  while (!(await reader.read()).done) {
    // drain
  }
  return { total: performance.now() - started, firstByte };
}

/** Direct and proxied turns, interleaved so machine noise hits both alike; differences are paired. */
async function pairedTurns(directUrl: string, proxyUrl: string, count: number): Promise<{ direct: TurnTiming[]; proxied: TurnTiming[] }> {
  // The direct baseline asks for exactly what the proxy injects, so the model streams the same bytes.
  const directBody = { ...chatBody, logprobs: true, top_logprobs: 5, return_token_ids: true };
  const direct: TurnTiming[] = [];
  const proxied: TurnTiming[] = [];
  for (let i = 0; i < count + 20; i++) {
    const d = await streamedTurn(directUrl, directBody);
    const p = await streamedTurn(proxyUrl, chatBody);
    if (i >= 20) {
      direct.push(d);
      proxied.push(p);
    }
  }
  return { direct, proxied };
}

/** Starts a CLI subcommand and returns the URL it prints on stdout, plus a way to stop it. */
async function startCliServer(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ url: string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [path.join(repo, 'dist/cli.js'), ...args], {
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
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/**
 * The model and the proxy each in a process of their own, as in a real rollout (the proxy lives in the
 * server, the model elsewhere), so the proxy's work is not serialised with the model's on one event loop.
 */
async function startModelAndProxy(turn: Record<string, unknown>) {
  const scriptFile = path.join(scratch, `script-${Date.now()}.json`);
  writeFileSync(scriptFile, JSON.stringify({ turns: [turn] }));
  const model = await startCliServer(['scripted-llm', '--script', scriptFile]);
  const proxy = await startCliServer(['proxy', '--upstream', model.url, '--top-logprobs', '5', '--max-tokens-cap', '4096']);
  return {
    llm: { url: model.url },
    proxied: proxy.url,
    stop: async () => {
      await proxy.stop();
      await model.stop();
    },
  };
}

async function benchProxy(): Promise<string[][]> {
  const rows: string[][] = [];
  const diff = (a: TurnTiming[], b: TurnTiming[], key: keyof TurnTiming) => b.map((t, i) => t[key] - a[i]![key]);

  // Paced like a fast model (one token every 2 ms): what the agent waits for in addition, per turn.
  const pacedText = TURN_TEXT.split(' ').slice(0, 20).join(' ');
  const paced = await startModelAndProxy({ text: pacedText, chunk_delay_ms: 2 });
  const p = await pairedTurns(paced.llm.url, paced.proxied, Math.min(TURNS, 150));
  const pacedTokens = tokenize(pacedText).length;
  const addedTotal = diff(p.direct, p.proxied, 'total');
  const addedFirst = diff(p.direct, p.proxied, 'firstByte');
  rows.push(
    [
      `paced turn (${pacedTokens} tokens, 2 ms apart), direct`,
      fmtMs(median(p.direct.map((t) => t.total))),
      fmtMs(
        percentile(
          p.direct.map((t) => t.total),
          95,
        ),
      ),
      '',
      '',
    ],
    [
      'paced turn, through the recording proxy',
      fmtMs(median(p.proxied.map((t) => t.total))),
      fmtMs(
        percentile(
          p.proxied.map((t) => t.total),
          95,
        ),
      ),
      '',
      '',
    ],
    [
      'added per streamed turn (paired differences)',
      fmtMs(median(addedTotal)),
      fmtMs(percentile(addedTotal, 95)),
      'p50 <= 1 ms',
      median(addedTotal) <= 1 ? 'yes' : 'NO',
    ],
    ['added to time to first byte', fmtMs(median(addedFirst)), fmtMs(percentile(addedFirst, 95)), '', ''],
  );
  await paced.stop();

  // Unpaced: every chunk at once, so the proxy's per-chunk work piles up. This is CPU cost, not waiting.
  const blast = await startModelAndProxy({ text: TURN_TEXT });
  const b = await pairedTurns(blast.llm.url, blast.proxied, TURNS);
  const tokensPerTurn = tokenize(TURN_TEXT).length;
  const addedBlast = diff(b.direct, b.proxied, 'total');
  rows.push(
    [
      `unpaced turn (${tokensPerTurn} tokens at once), direct`,
      fmtMs(median(b.direct.map((t) => t.total))),
      fmtMs(
        percentile(
          b.direct.map((t) => t.total),
          95,
        ),
      ),
      '',
      '',
    ],
    [
      'unpaced turn, through the recording proxy',
      fmtMs(median(b.proxied.map((t) => t.total))),
      fmtMs(
        percentile(
          b.proxied.map((t) => t.total),
          95,
        ),
      ),
      '',
      '',
    ],
    ['added per unpaced turn (proxy CPU per turn)', fmtMs(median(addedBlast)), fmtMs(percentile(addedBlast, 95)), '', ''],
  );

  const directBody = { ...chatBody, logprobs: true, top_logprobs: 5, return_token_ids: true };
  const throughput = async (url: string, body: unknown): Promise<number> => {
    const concurrency = 8;
    const perWorker = 40;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        for (let i = 0; i < perWorker; i++) await streamedTurn(url, body);
      }),
    );
    return (concurrency * perWorker) / ((performance.now() - started) / 1000);
  };
  const directRate = await throughput(blast.llm.url, directBody);
  const proxyRate = await throughput(blast.proxied, chatBody);
  rows.push(
    ['throughput, 8 clients, unpaced: direct / proxied', `${directRate.toFixed(0)} / ${proxyRate.toFixed(0)} turns/s`, '', '', ''],
    ['proxied tokens/s, recorded with ids + logprobs', `${(proxyRate * tokensPerTurn).toFixed(0)}`, '', '', ''],
  );
  await blast.stop();
  return rows;
}

/** Busy CPU seconds of the whole machine so far (all cores), from /proc/stat. */
function machineBusySeconds(): number {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  const total = fields.reduce((a, b) => a + b, 0);
  return (total - idle) / 100; // USER_HZ
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
