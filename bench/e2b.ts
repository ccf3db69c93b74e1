/**
 * bench:e2b, the E2B backend against the offline stand-in (test/helpers/e2b-standin: the real `e2b` SDK over real
 * HTTP, each sandbox a local bwrap sandbox), counting what it asks of E2B (every control-plane and envd request the
 * stand-in records) and, where there is a time to compare, against the local backend in the same run:
 *  (1) round trips per execute_python call over MCP stdio (target 1 when warm; the cold first call separately), and
 *      its p50 latency against the local backend, calls interleaved so machine noise hits both alike;
 *  (2) round trips per rollout phase (fizzbuzz, the scripted model), attributed by the `phase: <name>` progress
 *      notifications, with BENCH_ROLLOUT_FILES staged files (2 and 50: the files phase must not grow with them);
 *  (3) sandbox creations per execute_python episode (target 1; a reset, exactly one more);
 *  (4) the latency an LLM channel adds per streamed turn (K SSE chunks), local vs E2B, the host as the floor.
 * The stand-in runs on this machine, so its latencies are the backend's own cost without E2B's network: a real
 * E2B adds one network round trip per request counted here.
 * BENCH_CALLS (500), BENCH_ROLLOUT_FILES (2,50), BENCH_CHANNEL_TURNS (100) and BENCH_CHANNEL_CHUNKS (100) set the sizes.
 */
import os from 'node:os';
import { startE2bStandIn, type E2bStandIn, type RecordedRequest } from '../test/helpers/e2b-standin/index.js';
import { exampleScript, exampleTask, startScripted } from '../test/helpers/scripted.js';
import { startServer, type RunningServer } from '../test/helpers/server.js';
import { measureChannels, type TurnTiming } from './e2b-channel.js';
import { describeRequests, isCreate, requestsByPhase, requestsDuring, type PhaseMark } from './e2b-requests.js';
import { fmtMs, median, percentile, printTable } from './stats.js';

const CALLS = Number(process.env.BENCH_CALLS ?? 500);
const ROLLOUT_FILES = (process.env.BENCH_ROLLOUT_FILES ?? '2,50').split(',').map(Number);
const CHANNEL_TURNS = Number(process.env.BENCH_CHANNEL_TURNS ?? 100);
const CHANNEL_ROUNDS = 5;
const CHANNEL_CHUNKS = Number(process.env.BENCH_CHANNEL_CHUNKS ?? 100);
const WARM_UP = 5;
const PHASES = ['before', 'queue', 'sandbox', 'files', 'setup', 'install', 'proxy', 'agent', 'verify', 'collect', 'trace'];

/** What the phases' requests are (see the legend printed under the table). */
const PHASE_NOTES: Record<string, string> = {
  files: 'one archive up, one command unpacks it',
  setup: 'the setup command, then the opencode lookup',
  proxy: 'node lookup, relay upload, relay Start (held for the rollout)',
  agent: 'opencode: 1 Start + stdin, its tools 0; the relay: 1 SendInput per LLM turn',
  verify: 'ends the agent, prepares, runs the test, reads the reward',
  collect: 'one archive down; then the teardown (kill)',
};

type Row = [measure: string, value: string, detail: string, target: string, met: string];
const met = (ok: boolean) => (ok ? 'yes' : 'NO');
const signedMs = (ms: number) => `${ms < 0 ? '-' : '+'}${fmtMs(Math.abs(ms))}`;

/** The server on the E2B backend, pointed at the stand-in the way the SDK reads it (its own E2B_* variables). */
function e2bServer(standIn: E2bStandIn): Promise<RunningServer> {
  return startServer({
    env: {
      E2B_API_KEY: standIn.apiKey,
      E2B_API_URL: standIn.apiUrl,
      E2B_SANDBOX_URL: standIn.sandboxUrl,
      OPENCODE_ENV_E2B_CREATE_PER_S: '50',
      OPENCODE_ENV_LOG_LEVEL: 'warn',
    },
  });
}

/** (1) and (3): one episode on each backend, calls interleaved; every e2b call's requests counted. */
async function benchPython(standIn: E2bStandIn): Promise<Row[]> {
  const [e2b, local] = await Promise.all([
    e2bServer(standIn),
    startServer({ env: { OPENCODE_ENV_SANDBOX: 'local', OPENCODE_ENV_LOG_LEVEL: 'warn' } }),
  ]);
  try {
    const run = (server: RunningServer, code: string) => server.callOk('execute_python', { code });
    const timed = async (server: RunningServer, code: string) => {
      const started = performance.now();
      await run(server, code);
      return performance.now() - started;
    };
    const creates = () => standIn.requests.filter(isCreate).length;
    const createsAtStart = creates();
    const cold = await requestsDuring(standIn.requests, () => run(e2b, 'x = 0'));
    const localColdMs = await timed(local, 'x = 0');
    for (let i = 0; i < 20; i++) for (const server of [e2b, local]) await run(server, 'x = x + 1');

    const e2bMs: number[] = [];
    const localMs: number[] = [];
    const roundTrips: number[] = [];
    const warmRequests: RecordedRequest[] = [];
    for (let i = 0; i < CALLS; i++) {
      const call = await requestsDuring(standIn.requests, () => run(e2b, 'x = x + 1'));
      e2bMs.push(call.ms);
      roundTrips.push(call.requests.length);
      warmRequests.push(...call.requests);
      localMs.push(await timed(local, 'x = x + 1'));
    }
    for (const server of [e2b, local]) {
      const x = (await run(server, 'x')).stdout.trim();
      if (x !== String(CALLS + 20)) throw new Error(`state was not kept: x = ${x}`);
    }
    const episodeCreates = creates() - createsAtStart;
    const afterReset = await requestsDuring(standIn.requests, async () => {
      await e2b.callOk('reset', {});
      return run(e2b, 'y = 1');
    });
    const resetCreates = afterReset.requests.filter(isCreate).length;

    const p50 = median(e2bMs);
    const localP50 = median(localMs);
    return [
      [
        '(1) round trips per warm execute_python call',
        `${median(roundTrips)} (max ${Math.max(...roundTrips)})`,
        describeRequests(warmRequests),
        '1',
        met(median(roundTrips) <= 1),
      ],
      ['    first (cold) call: sandbox + driver start', `${cold.requests.length}`, describeRequests(cold.requests), '', ''],
      [
        '    execute_python p50 / p95, e2b (stand-in)',
        `${fmtMs(p50)} / ${fmtMs(percentile(e2bMs, 95))}`,
        `first call ${fmtMs(cold.ms)}`,
        '',
        '',
      ],
      [
        '    execute_python p50 / p95, local',
        `${fmtMs(localP50)} / ${fmtMs(percentile(localMs, 95))}`,
        `first call ${fmtMs(localColdMs)}`,
        '',
        '',
      ],
      ['    ratio of p50s (e2b / local)', `${(p50 / localP50).toFixed(2)}x`, `${CALLS} calls each, interleaved`, '', ''],
      [
        `(3) sandbox creations in an episode of ${CALLS + 22} calls`,
        `${episodeCreates}`,
        'POST /v2/sandboxes',
        '1',
        met(episodeCreates === 1),
      ],
      ['    creations for reset + one call', `${resetCreates}`, describeRequests(afterReset.requests), '1', met(resetCreates === 1)],
    ];
  } finally {
    await Promise.all([e2b.close(), local.close()]);
  }
}

/** One fizzbuzz rollout with `fileCount` staged files; the stand-in's requests grouped by the phase they arrived in. */
async function phaseRequests(server: RunningServer, standIn: E2bStandIn, llmUrl: string, fileCount: number) {
  const marks: PhaseMark[] = [];
  const files = Object.fromEntries(Array.from({ length: fileCount }, (_, i) => [`data/file-${i}.txt`, `staged file ${i}\n`]));
  const { value: result, requests } = await requestsDuring(standIn.requests, () =>
    server.client.callTool(
      {
        name: 'run_rollout',
        arguments: {
          ...exampleTask(),
          base_url: llmUrl,
          model: 'scripted-model',
          disable_thinking: true,
          files,
          setup: ['ls data > /dev/null'],
        },
      },
      undefined,
      {
        timeout: 300_000,
        onprogress: (progress) => {
          const phase = /^phase: (\w+)/.exec(progress.message ?? '')?.[1];
          if (phase) marks.push({ phase, at: performance.now() });
        },
      },
    ),
  );
  const rollout = result.structuredContent as { reward: number | null; error: string | null; proxy_turns: unknown[] } | undefined;
  if (rollout?.reward !== 1) throw new Error(`the benchmark rollout failed: ${rollout?.error ?? JSON.stringify(result.content)}`);
  return { byPhase: requestsByPhase(requests, marks), llmTurns: rollout.proxy_turns.length };
}

/** (2): round trips per phase, the same rollout with each number of staged files side by side. */
async function benchRollout(standIn: E2bStandIn): Promise<Row[]> {
  const [server, llm] = await Promise.all([e2bServer(standIn), startScripted(exampleScript('script.json'))]);
  try {
    const runs: Array<{ byPhase: Map<string, RecordedRequest[]>; llmTurns: number }> = [];
    for (const count of ROLLOUT_FILES) runs.push(await phaseRequests(server, standIn, llm.url, count));
    const rows: Row[] = [];
    for (const phase of PHASES.filter((p) => runs.some((run) => run.byPhase.has(p)))) {
      const counts = runs.map((run) => run.byPhase.get(phase)?.length ?? 0);
      const turns = phase === 'agent' ? ` (${runs.map((run) => run.llmTurns).join(' / ')} LLM turns)` : '';
      const note = PHASE_NOTES[phase] ? `; ${PHASE_NOTES[phase]}${turns}` : '';
      const files = phase === 'files';
      rows.push([
        `    ${phase}`,
        counts.join(' / '),
        `${describeRequests(runs.at(-1)!.byPhase.get(phase) ?? [])}${note}`,
        files ? 'same for any count' : '',
        files ? met(counts.every((c) => c === counts[0])) : '',
      ]);
    }
    const totals = runs.map((run) => [...run.byPhase.values()].reduce((sum, requests) => sum + requests.length, 0));
    rows.unshift([`(2) round trips per rollout phase (${ROLLOUT_FILES.join(' / ')} staged files)`, totals.join(' / '), 'in all', '', '']);
    return rows;
  } finally {
    await Promise.all([server.close(), llm.close()]);
  }
}

/** (4): the same streamed turns from the host, a local sandbox and an E2B (stand-in) sandbox, each through its channel. */
async function benchChannel(standIn: E2bStandIn): Promise<Row[]> {
  const {
    host,
    local: viaLocal,
    e2b: viaE2b,
    sendInputsPerTurn,
  } = await measureChannels(standIn, {
    chunks: CHANNEL_CHUNKS,
    turns: CHANNEL_TURNS,
    rounds: CHANNEL_ROUNDS,
    warmUp: WARM_UP,
  });
  const p50 = (turns: TurnTiming[], key: keyof TurnTiming) => median(turns.map((t) => t[key]));
  const row = (name: string, turns: TurnTiming[]): Row => [
    `    ${name}`,
    `${fmtMs(p50(turns, 'ttfb'))} / ${fmtMs(p50(turns, 'total'))}`,
    `${signedMs(p50(turns, 'ttfb') - p50(host, 'ttfb'))} / ${signedMs(p50(turns, 'total') - p50(host, 'total'))} over the host`,
    '',
    '',
  ];
  const added = (key: keyof TurnTiming) => p50(viaE2b, key) - p50(viaLocal, key);
  return [
    [
      `(4) streamed turn (${CHANNEL_CHUNKS} SSE chunks), p50 TTFB / total`,
      '',
      `${CHANNEL_TURNS} sequential turns each, in ${CHANNEL_ROUNDS} interleaved rounds of a fresh client (${WARM_UP} warm-up turns discarded)`,
      '',
      '',
    ],
    ['    host, no sandbox (the floor)', `${fmtMs(p50(host, 'ttfb'))} / ${fmtMs(p50(host, 'total'))}`, '', '', ''],
    row('local sandbox (loopback bridge)', viaLocal),
    row('e2b (stand-in) sandbox (relay over envd)', viaE2b),
    ['    e2b: relay stdin writes (SendInput) per turn', sendInputsPerTurn.toFixed(2), "the answer's chunks, batched", '', ''],
    ['    added by e2b over local', `${fmtMs(added('ttfb'))} / ${fmtMs(added('total'))}`, 'per turn, p50 TTFB / total', '', ''],
  ];
}

const standIn = await startE2bStandIn();
try {
  console.log(`\nmachine: ${os.cpus().length} cores, node ${process.version}; E2B = the offline stand-in on this machine\n`);
  const rows = [...(await benchPython(standIn)), ...(await benchRollout(standIn)), ...(await benchChannel(standIn))];
  printTable(['measure', 'value', 'detail', 'target', 'met'], rows);
  console.log(
    '\n(1) counts the requests the stand-in saw while each call ran. (2) gives each request to the phase the server announced' +
      '\n(`phase: <name>` progress) last before it arrived; the agent phase counts opencode as the one command it is (the' +
      "\ncommands it runs for its tools go through no E2B API) and the relay's stream, which carries the LLM's answers back" +
      '\nto the sandbox: one SendInput per turn, batched; its last frame (closing the connection) lands in agent or verify,' +
      '\nwhichever is current when opencode has exited. A real E2B adds one network round trip per request counted here.',
  );
} finally {
  await standIn.close();
}
