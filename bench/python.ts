/**
 * bench:python, each measurement against baselines taken in the same run:
 *  (a) round-trip latency of execute_python through MCP stdio (a real MCP SDK client, `x = x + 1`), p50 and p90,
 *      interleaved in rounds with two floors: a raw pipe round trip with JSON both ways (node <-> a python3 echo
 *      loop: one process hop, the physical limit of any design), and the same SDK client calling a bare SDK stdio
 *      server's `echo` tool (what MCP itself costs, no sandbox, no interpreter). Target: p50 <= 1 ms. Rounds are
 *      interleaved (ours, pipe, bare, ours, ...) so machine noise hits all three alike;
 *  (b) time from spawning the server to the resolved `client.connect()` (spawn + `initialize` round
 *      trip) of our stdio server (`node dist/cli.js`) against a bare MCP SDK stdio server with one
 *      tool (`node bench/fixtures/bare-mcp-server.mjs`), both started the same way with the same
 *      environment. Starts are interleaved (ours, bare, ours, bare, ...) after one discarded warm-up
 *      each, so machine noise hits both alike; medians are compared;
 *  (c) the first execute_python call (sandbox + interpreter start);
 *  (d) a spawn-per-call baseline (`python3 -c` for every call).
 * Targets: p50 <= 1 ms, >= 15x faster than (d), initialize <= 1 s and <= 1.2x the bare server.
 * BENCH_CALLS (1000, in BENCH_ROUNDS = 10 rounds), BENCH_BASELINE_CALLS (200) and BENCH_STARTS (15 of each server) set the sizes.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmtMs, median, percentile, printTable } from './stats.js';

const CALLS = Number(process.env.BENCH_CALLS ?? 1000);
const BASELINE_CALLS = Number(process.env.BENCH_BASELINE_CALLS ?? 200);
const STARTS = Number(process.env.BENCH_STARTS ?? 15);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 10);
const TARGET_P50_MS = 1;
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

  // The real interpreter binary, not a shim (pyenv's bash shim alone costs ~100 ms and would flatter us).
  const requested = process.env.OPENCODE_ENV_PYTHON ?? 'python3';
  const python = spawnSync(requested, ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).stdout.trim();

  const { client } = await connect();
  const firstStarted = performance.now();
  await client.callTool({ name: 'execute_python', arguments: { code: 'x = 0' } });
  const firstCallMs = performance.now() - firstStarted;
  const pipe = startPipeEcho(python);
  const { client: bare } = await connect(bareServer);
  const callOurs = async () => {
    const t0 = performance.now();
    const result = await client.callTool({ name: 'execute_python', arguments: { code: 'x = x + 1' } });
    if (result.isError) throw new Error(JSON.stringify(result.content));
    return performance.now() - t0;
  };
  const callBare = async () => {
    const t0 = performance.now();
    await bare.callTool({ name: 'echo', arguments: { text: 'x = x + 1' } });
    return performance.now() - t0;
  };
  const WARM_UP = 50;
  for (let i = 0; i < WARM_UP; i++) await Promise.all([callOurs(), pipe.roundTrip(), callBare()]);

  const rtt: number[] = [];
  const pipeRtt: number[] = [];
  const bareRtt: number[] = [];
  const perRound = Math.ceil(CALLS / ROUNDS);
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < perRound; i++) rtt.push(await callOurs());
    for (let i = 0; i < perRound; i++) pipeRtt.push(await pipe.roundTrip());
    for (let i = 0; i < perRound; i++) bareRtt.push(await callBare());
  }
  const final = await client.callTool({ name: 'execute_python', arguments: { code: 'x' } });
  const finalX = (final.structuredContent as { stdout: string }).stdout.trim();
  await Promise.all([client.close(), bare.close(), pipe.close()]);
  if (finalX !== String(rtt.length + WARM_UP)) throw new Error(`state was not kept: x = ${finalX}`);

  const baseline: number[] = [];
  for (let i = 0; i < BASELINE_CALLS; i++) {
    const t0 = performance.now();
    const out = spawnSync(python, ['-c', 'x = 0\nx = x + 1'], { encoding: 'utf8' });
    baseline.push(performance.now() - t0);
    if (out.status !== 0) throw new Error(out.stderr);
  }
  rmSync(sandboxRoot, { recursive: true, force: true });

  const p50 = median(rtt);
  const pipeP50 = median(pipeRtt);
  const bareP50 = median(bareRtt);
  const baseP50 = median(baseline);
  const oursStart = median(oursStarts);
  const bareStart = median(bareStarts);
  const startRatio = oursStart / bareStart;
  console.log(
    `\nexecute_python round trip over MCP stdio (${rtt.length} calls of \`x = x + 1\` by the MCP SDK client), interleaved in ${ROUNDS} rounds with` +
      ` two floors: a raw pipe round trip with JSON both ways (node <-> a python3 echo loop) and the SDK client calling a bare SDK server's echo tool;` +
      `\nbaseline: ${BASELINE_CALLS} spawns of \`${python} -c\`; spawn -> initialize: ${STARTS} interleaved starts each of \`node dist/cli.js\` and \`node bench/fixtures/bare-mcp-server.mjs\`\n`,
  );
  const row = (name: string, samples: number[]) => [
    name,
    fmtMs(median(samples)),
    fmtMs(percentile(samples, 90)),
    fmtMs(percentile(samples, 99)),
  ];
  printTable(
    ['measure', 'p50', 'p90', 'p99', 'target', 'met'],
    [
      [...row('execute_python via MCP stdio', rtt), `p50 <= ${TARGET_P50_MS} ms`, p50 <= TARGET_P50_MS ? 'yes' : 'NO'],
      [...row('floor: raw pipe round trip + JSON both ways', pipeRtt), '', ''],
      [...row('floor: bare MCP SDK server, echo tool', bareRtt), '', ''],
      ['ours - bare MCP (sandboxed interpreter + our layers)', fmtMs(p50 - bareP50), '', '', '', ''],
      ['ours / raw pipe', `${(p50 / pipeP50).toFixed(1)}x`, '', '', '', ''],
      [...row('baseline: python3 -c per call', baseline), '', ''],
      ['speed-up (baseline p50 / ours p50)', `${(baseP50 / p50).toFixed(1)}x`, '', '', '>= 15x', baseP50 / p50 >= 15 ? 'yes' : 'NO'],
      [
        'spawn -> initialize: opencode-env',
        fmtMs(oursStart),
        fmtMs(percentile(oursStarts, 90)),
        '',
        '<= 1 s',
        oursStart <= 1000 ? 'yes' : 'NO',
      ],
      ['spawn -> initialize: bare MCP SDK server (1 tool)', fmtMs(bareStart), fmtMs(percentile(bareStarts, 90)), '', '', ''],
      ['ratio (ours / bare)', `${startRatio.toFixed(2)}x`, '', '', `<= ${RATIO_TARGET}x`, startRatio <= RATIO_TARGET ? 'yes' : 'NO'],
      ['first call (sandbox + interpreter start)', fmtMs(firstCallMs), '', '', '', ''],
    ],
  );
}

/** The driver's reply to one call, as the echo loop sends it: the floor carries JSON of the same shape both ways. */
const PIPE_ECHO = [
  'import json, sys',
  'for line in sys.stdin:',
  '    request = json.loads(line)',
  '    reply = {"id": request["id"], "stdout_b64": "", "stderr_b64": "", "exit_code": 0, "interrupted": False, "dropped": {"stdout": 0, "stderr": 0}}',
  '    sys.stdout.write(json.dumps(reply) + "\\n")',
  '    sys.stdout.flush()',
].join('\n');

/** A python3 loop that answers each JSON line with one: a single pipe round trip with JSON both ways, one call at a time. */
function startPipeEcho(python: string): { roundTrip: () => Promise<number>; close: () => Promise<void> } {
  const child = spawn(python, ['-u', '-c', PIPE_ECHO], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let buffered = '';
  let waiting: ((line: string) => void) | null = null;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    buffered += chunk;
    const newline = buffered.indexOf('\n');
    if (newline < 0 || !waiting) return;
    const line = buffered.slice(0, newline);
    buffered = buffered.slice(newline + 1);
    const resolve = waiting;
    waiting = null;
    resolve(line);
  });
  let id = 0;
  return {
    roundTrip: async () => {
      const t0 = performance.now();
      const line = new Promise<string>((resolve) => (waiting = resolve));
      child.stdin.write(`${JSON.stringify({ op: 'exec', id: ++id, code: 'x = x + 1', max_output_bytes: 1 << 20 })}\n`);
      const reply = JSON.parse(await line) as { id: number };
      if (reply.id !== id) throw new Error(`the echo loop answered ${reply.id} to ${id}`);
      return performance.now() - t0;
    },
    close: async () => {
      child.stdin.end();
      await exited;
    },
  };
}

await main();
