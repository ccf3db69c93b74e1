#!/usr/bin/env node
/**
 * Where the stdio server's start-up time goes: `node bench/startup-imports.mjs` (after `npm run build`).
 *
 * Every sample is a fresh `node` process (same minimal environment as bench:python) that does the
 * untimed set-up of a step, then times the step itself with performance.now(). Steps:
 *  - imports, in the order `node dist/cli.js` loads them. "incremental" = cost with every earlier
 *    import already loaded (shared dependencies counted once, so the column sums to the whole import
 *    phase); "alone" = cost in an otherwise empty process (what loading only that would cost);
 *  - calls made on the way to answering `initialize`, each after all imports are loaded;
 *  - references: node's own boot (timeOrigin -> first statement) and what the bare one-tool server
 *    of bench/fixtures/bare-mcp-server.mjs imports.
 * Samples are interleaved round-robin over steps so machine noise spreads evenly; medians are shown.
 * BENCH_RUNS (default 7) sets the samples per step. A step whose module is not installed shows n/a.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = (file) => pathToFileURL(path.join(root, 'dist', file)).href;
const sandboxRoot = mkdtempSync(path.join(os.tmpdir(), 'opencode-env-startup-'));
const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? os.homedir(), OPENCODE_ENV_SANDBOX_DIR: sandboxRoot, OPENCODE_ENV_LOG_LEVEL: 'warn' };

/** Imports in the order the default stdio path loads them (cli.js static imports, then the stdio action's). */
const IMPORTS = [
  ['commander', 'commander'],
  ['zod', 'zod'],
  ['dist/config.js (env schema)', dist('config.js')],
  ['@modelcontextprotocol/sdk/server/mcp.js', '@modelcontextprotocol/sdk/server/mcp.js'],
  ['node:http + node:https (recording proxy)', 'node:https'],
  ['dist/core/rollout/run.js (rollout graph)', dist('core/rollout/run.js')],
  ['dist/tools/index.js (tool zod schemas)', dist('tools/index.js')],
  ['dist/server.js (rest: resources, package.json)', dist('server.js')],
  ['pino', 'pino'],
  ['dist/log.js', dist('log.js')],
  ['execa', 'execa'],
  ['dist/sandbox/local/provider.js', dist('sandbox/local/provider.js')],
  ['dist/core/rollout/opencode-binary.js', dist('core/rollout/opencode-binary.js')],
  ['dist/runtime.js (rest)', dist('runtime.js')],
  ['@modelcontextprotocol/sdk/server/stdio.js', '@modelcontextprotocol/sdk/server/stdio.js'],
  ['dist/transports/stdio.js (episode, interpreter)', dist('transports/stdio.js')],
];
const importAll = IMPORTS.map(([, spec]) => `await import(${JSON.stringify(spec)}).catch(() => {});`).join('\n');
const importsFor = (names) => names.map(([name, spec]) => `const { ${name} } = await import(${JSON.stringify(spec)});`).join('\n');

/** Work done on the way to the answer to `initialize`, each timed after every import is loaded. */
const CALLS = [
  ['process.report.getReport() (musl check)', '', 'process.report.getReport();'],
  ['findOpencodeBinary()', importsFor([['findOpencodeBinary', dist('core/rollout/opencode-binary.js')]]), 'findOpencodeBinary();'],
  ['loadConfig(env)', importsFor([['loadConfig', dist('config.js')]]), 'loadConfig(process.env);'],
  ['createLogger() (pino, sync stderr)', importsFor([['createLogger', dist('log.js')]]), "createLogger('warn');"],
  ['createRuntime() (all of the above and more)', importsFor([['createRuntime', dist('runtime.js')]]), 'createRuntime();'],
  [
    'new Episode() + createMcpServer() (registers tools)',
    `${importsFor([['createRuntime', dist('runtime.js')], ['Episode', dist('core/episode.js')], ['createMcpServer', dist('server.js')]])}
     const runtime = createRuntime();`,
    'createMcpServer({ episode: new Episode({ provider: runtime.provider, logger: runtime.logger }), logger: runtime.logger, rollouts: runtime.rollouts, traces: runtime.traces });',
  ],
];

const BARE = `await import('zod'); await import('@modelcontextprotocol/sdk/server/mcp.js'); await import('@modelcontextprotocol/sdk/server/stdio.js');`;
const BARE_REGISTER = `const { z } = await import('zod'); const { McpServer } = await import('@modelcontextprotocol/sdk/server/mcp.js');`;

/** One sample: runs `setup` untimed, then `timed`; returns its milliseconds (null when the set-up or step throws). */
function sample(setup, timed) {
  const script = `const boot = performance.now();\n${setup}\nconst t0 = performance.now();\n${timed}\nconst ms = performance.now() - t0;\nprocess.stdout.write(JSON.stringify({ ms, boot }));\nprocess.exit(0);`;
  const out = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (out.status !== 0) return null;
  try {
    return JSON.parse(out.stdout);
  } catch {
    return null;
  }
}

const rows = [];
for (let i = 0; i < IMPORTS.length; i++) {
  const [label, spec] = IMPORTS[i];
  const earlier = IMPORTS.slice(0, i).map(([, s]) => `await import(${JSON.stringify(s)}).catch(() => {});`).join('\n');
  rows.push({ group: 'import', label, incremental: [earlier, `await import(${JSON.stringify(spec)});`], alone: ['', `await import(${JSON.stringify(spec)});`] });
}
rows.push({ group: 'import', label: 'all of the above (one process)', alone: ['', importAll] });
for (const [label, setup, timed] of CALLS) rows.push({ group: 'call', label, incremental: [`${importAll}\n${setup}`, timed] });
rows.push({ group: 'ref', label: 'bare server imports: zod + sdk mcp.js + sdk stdio.js', alone: ['', BARE] });
rows.push({
  group: 'ref',
  label: 'bare server: new McpServer() + registerTool(echo)',
  incremental: [`${BARE}\n${BARE_REGISTER}`, "new McpServer({ name: 'b', version: '0' }).registerTool('echo', { inputSchema: { text: z.string() } }, async ({ text }) => ({ content: [{ type: 'text', text }] }));"],
});

const samples = new Map(rows.map((r) => [r, { incremental: [], alone: [], boot: [] }]));
const failed = new Set();
for (let run = 0; run < RUNS; run++) {
  for (const row of rows) {
    for (const kind of ['incremental', 'alone']) {
      if (!row[kind] || failed.has(`${row.label}/${kind}`)) continue;
      const s = sample(...row[kind]);
      if (s === null) failed.add(`${row.label}/${kind}`);
      else {
        samples.get(row).boot.push(s.boot);
        samples.get(row)[kind].push(s.ms);
      }
    }
  }
  process.stderr.write(`run ${run + 1}/${RUNS}\r`);
}
process.stderr.write('\n');
rmSync(sandboxRoot, { recursive: true, force: true });

const median = (xs) => (xs.length === 0 ? NaN : [...xs].sort((a, b) => a - b)[Math.ceil(xs.length / 2) - 1]);
const fmt = (xs, present) => (!present ? '' : xs.length === 0 ? 'n/a' : `${median(xs).toFixed(1)} ms`);
const table = rows.map((r) => [r.group, r.label, fmt(samples.get(r).incremental, r.incremental), fmt(samples.get(r).alone, r.alone)]);
const allBoot = [...samples.values()].flatMap((s) => s.boot);
table.push(['ref', 'node boot (process start -> first statement)', '', `${median(allBoot).toFixed(1)} ms`]);
const importSum = rows.filter((r) => r.group === 'import' && r.incremental).reduce((acc, r) => acc + (median(samples.get(r).incremental) || 0), 0);
table.push(['import', 'sum of the incremental imports', `${importSum.toFixed(1)} ms`, '']);

const headers = ['kind', 'step', 'incremental', 'alone'];
const widths = headers.map((h, i) => Math.max(h.length, ...table.map((r) => r[i].length)));
const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
console.log(`\nstart-up costs of ${root} (medians of ${RUNS} fresh processes per cell)\n`);
console.log(line(headers));
console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
for (const r of table) console.log(line(r));
