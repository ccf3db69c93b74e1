/**
 * bench:python, each measurement against a baseline taken in the same run:
 *  (a) round-trip latency of execute_python through MCP stdio against a spawn-per-call baseline
 *      (`python3 -c` for every call);
 *  (b) time from spawning the server to the resolved `client.connect()` (spawn + `initialize` round
 *      trip) of our stdio server (`node dist/cli.js`) against a bare MCP SDK stdio server with one
 *      tool (`node bench/fixtures/bare-mcp-server.mjs`), both started the same way with the same
 *      environment. Starts are interleaved (ours, bare, ours, bare, ...) after one discarded warm-up
 *      each, so machine noise hits both alike; medians are compared;
 *  (c) the first execute_python call (sandbox + interpreter start).
 * Targets: p50 <= 2 ms, >= 15x faster than the baseline, initialize <= 1 s and <= 1.2x the bare server.
 * BENCH_CALLS (1000), BENCH_BASELINE_CALLS (200) and BENCH_STARTS (15 of each server) set the sizes.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmtMs, median, percentile, printTable } from './stats.js';

const CALLS = Number(process.env.BENCH_CALLS ?? 1000);
const BASELINE_CALLS = Number(process.env.BENCH_BASELINE_CALLS ?? 200);
const STARTS = Number(process.env.BENCH_STARTS ?? 15);
const RATIO_TARGET = 1.2;
const benchDir = path.dirname(fileURLToPath(import.meta.url));
const cli = path.resolve(benchDir, '..', 'dist', 'cli.js');
const bareServer = path.join(benchDir, 'fixtures', 'bare-mcp-server.mjs');
const sandboxRoot = mkdtempSync(path.join(os.tmpdir(), 'opencode-env-bench-'));
const env = {
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: process.env.HOME ?? os.homedir(),
  OPENCODE_ENV_SANDBOX_DIR: sandboxRoot,
  OPENCODE_ENV_LOG_LEVEL: 'warn',
};

/** Spawns `node <script>` and times it up to the answer to `initialize` (what `client.connect()` awaits). */
async function connect(script = cli): Promise<{ client: Client; initializeMs: number }> {
  const transport = new StdioClientTransport({ command: process.execPath, args: [script], env, stderr: 'inherit' });
  const client = new Client({ name: 'bench', version: '0' });
  const started = performance.now();
  await client.connect(transport); // spawn + initialize round trip
  return { client, initializeMs: performance.now() - started };
}

async function main(): Promise<void> {
  // Both servers must really serve: ours lists execute_python, the bare one its single tool.
  for (const [script, tool] of [
    [cli, 'execute_python'],
    [bareServer, 'echo'],
  ] as const) {
    const { client } = await connect(script); // also the discarded warm-up (disk cache, compile cache)
    const { tools } = await client.listTools();
    await client.close();
    if (!tools.some((t) => t.name === tool)) throw new Error(`${script} does not list the tool ${tool}`);
  }
  const oursStarts: number[] = [];
  const bareStarts: number[] = [];
  for (let i = 0; i < STARTS; i++) {
    for (const [script, samples] of [
      [cli, oursStarts],
      [bareServer, bareStarts],
    ] as const) {
      const { client, initializeMs } = await connect(script);
      samples.push(initializeMs);
      await client.close(); // waits for the process to exit, so the next start has the machine to itself
    }
  }

  const { client } = await connect();
  const firstStarted = performance.now();
  await client.callTool({ name: 'execute_python', arguments: { code: 'x = 0' } });
  const firstCallMs = performance.now() - firstStarted;
  for (let i = 0; i < 50; i++) await client.callTool({ name: 'execute_python', arguments: { code: 'x = x + 1' } });

  const rtt: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    const t0 = performance.now();
    const result = await client.callTool({ name: 'execute_python', arguments: { code: 'x = x + 1' } });
    rtt.push(performance.now() - t0);
    if (result.isError) throw new Error(JSON.stringify(result.content));
  }
  const final = await client.callTool({ name: 'execute_python', arguments: { code: 'x' } });
  const finalX = (final.structuredContent as { stdout: string }).stdout.trim();
  await client.close();
  if (finalX !== String(CALLS + 50)) throw new Error(`state was not kept: x = ${finalX}`);

  // The real interpreter binary, not a shim (pyenv's bash shim alone costs ~100 ms and would flatter us).
  const requested = process.env.OPENCODE_ENV_PYTHON ?? 'python3';
  const python = spawnSync(requested, ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).stdout.trim();
  const baseline: number[] = [];
  for (let i = 0; i < BASELINE_CALLS; i++) {
    const t0 = performance.now();
    const out = spawnSync(python, ['-c', 'x = 0\nx = x + 1'], { encoding: 'utf8' });
    baseline.push(performance.now() - t0);
    if (out.status !== 0) throw new Error(out.stderr);
  }
  rmSync(sandboxRoot, { recursive: true, force: true });

  const p50 = median(rtt);
  const baseP50 = median(baseline);
  const oursStart = median(oursStarts);
  const bareStart = median(bareStarts);
  const startRatio = oursStart / bareStart;
  console.log(
    `\nexecute_python round trip over MCP stdio (${CALLS} calls of \`x = x + 1\`; baseline: ${BASELINE_CALLS} spawns of \`${python} -c\`);` +
      `\nspawn -> initialize: ${STARTS} interleaved starts each of \`node dist/cli.js\` and \`node bench/fixtures/bare-mcp-server.mjs\`\n`,
  );
  printTable(
    ['measure', 'p50', 'p95', 'p99', 'target', 'met'],
    [
      [
        'execute_python via MCP stdio',
        fmtMs(p50),
        fmtMs(percentile(rtt, 95)),
        fmtMs(percentile(rtt, 99)),
        'p50 <= 2 ms',
        p50 <= 2 ? 'yes' : 'NO',
      ],
      ['baseline: python3 -c per call', fmtMs(baseP50), fmtMs(percentile(baseline, 95)), fmtMs(percentile(baseline, 99)), '', ''],
      ['speed-up (baseline p50 / ours p50)', `${(baseP50 / p50).toFixed(1)}x`, '', '', '>= 15x', baseP50 / p50 >= 15 ? 'yes' : 'NO'],
      [
        'spawn -> initialize: opencode-env',
        fmtMs(oursStart),
        fmtMs(percentile(oursStarts, 95)),
        '',
        '<= 1 s',
        oursStart <= 1000 ? 'yes' : 'NO',
      ],
      ['spawn -> initialize: bare MCP SDK server (1 tool)', fmtMs(bareStart), fmtMs(percentile(bareStarts, 95)), '', '', ''],
      ['ratio (ours / bare)', `${startRatio.toFixed(2)}x`, '', '', `<= ${RATIO_TARGET}x`, startRatio <= RATIO_TARGET ? 'yes' : 'NO'],
      ['first call (sandbox + interpreter start)', fmtMs(firstCallMs), '', '', '', ''],
    ],
  );
}

await main();
