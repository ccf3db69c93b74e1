#!/usr/bin/env node
/**
 * Where the stdio server's start-up goes: `node bench/startup-profile.mjs` (after `npm run build`).
 * Companion to bench:python's spawn -> initialize comparison; it explains that number, it sets no target.
 *
 * 1. Phases of one start, clocked inside the server process by a preloaded probe (`--import`), for
 *    `node dist/cli.js` and for bench/fixtures/bare-mcp-server.mjs, interleaved: node's own boot,
 *    "listening" (a 'data' listener is on stdin: everything is imported and built) and the answer
 *    to `initialize` written to stdout; plus spawn -> answer as the parent sees it.
 * 2. Imports. The modules the stdio path loads before it answers `initialize` are discovered with a
 *    resolve hook: our dist/ files and the packages they import by name, as a tree (each module
 *    under the one that loads it first). Each is imported in a fresh process with all of its
 *    dependencies already loaded: "own" is what that module adds (its code, node builtins, a
 *    package's internals), "with subtree" adds up what it pulls in first, i.e. what not loading it
 *    would save. Packages also "alone", in an otherwise empty process.
 * 3. A few calls on the way, each after every import: the opencode binary lookup (done after the
 *    handshake, not before), loadConfig() and createLogger(). They are found by export name; a call
 *    whose module or export is missing shows n/a.
 * Every cell is the median of BENCH_RUNS (default 7) fresh processes, taken round-robin so machine
 * noise spreads evenly. BENCH_MIN_MS (default 2) folds subtrees cheaper than that into one row.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const MIN_MS = Number(process.env.BENCH_MIN_MS ?? 2);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const distUrl = pathToFileURL(path.join(root, 'dist')).href + '/';
const cli = path.join(root, 'dist', 'cli.js');
const bare = path.join(root, 'bench', 'fixtures', 'bare-mcp-server.mjs');
const scratch = mkdtempSync(path.join(os.tmpdir(), 'opencode-env-startup-'));
const env = {
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: process.env.HOME ?? os.homedir(),
  OPENCODE_ENV_SANDBOX_DIR: path.join(scratch, 'sandboxes'),
  OPENCODE_ENV_LOG_LEVEL: 'warn',
};
const INITIALIZE = `${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'startup-profile', version: '0' } } })}\n`;

// Preloaded into the measured server: notes when stdin gets a 'data' listener and when the answer is written.
const probe = path.join(scratch, 'probe.mjs');
writeFileSync(
  probe,
  `import { appendFileSync } from 'node:fs';
const marks = { boot: performance.now() };
const stdin = process.stdin;
const on = stdin.on;
stdin.on = function (event, listener) {
  if (event === 'data' && marks.listening === undefined) marks.listening = performance.now();
  return on.call(this, event, listener);
};
const write = process.stdout.write;
process.stdout.write = function (chunk, ...rest) {
  if (marks.answered === undefined && String(chunk).includes('"id":1')) {
    marks.answered = performance.now();
    appendFileSync(process.env.STARTUP_PROBE_OUT, JSON.stringify(marks) + '\\n');
  }
  return write.call(this, chunk, ...rest);
};
`,
);
// Discovery: every resolution while the stdio server starts, in order.
const hooks = path.join(scratch, 'hooks.mjs');
const register = path.join(scratch, 'register.mjs');
writeFileSync(
  hooks,
  `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  appendFileSync(${JSON.stringify(path.join(scratch, 'graph.jsonl'))}, JSON.stringify({ parent: context.parentURL ?? '', specifier, url: result.url }) + '\\n');
  return result;
}
`,
);
writeFileSync(register, `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`);

/** Starts `node <preload> <script>`, sends `initialize`, resolves with the parent's spawn -> answer time once the process has exited. */
function startOnce(script, preload, extraEnv = {}, onAnswer = () => {}) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, ['--import', pathToFileURL(preload).href, script], {
      cwd: root,
      env: { ...env, ...extraEnv },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    let answeredMs = null;
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      if (answeredMs === null && out.includes('"id":1')) {
        answeredMs = performance.now() - started;
        onAnswer();
        child.stdin.end();
      }
    });
    child.on('error', reject);
    child.on('close', () =>
      answeredMs === null ? reject(new Error(`${script} exited without answering initialize`)) : resolve(answeredMs),
    );
    child.stdin.write(INITIALIZE);
  });
}

// --- 2. discover what the stdio path imports before it answers ---
let discovered = 0;
await startOnce(cli, register, {}, () => {
  discovered = readFileSync(path.join(scratch, 'graph.jsonl'), 'utf8').split('\n').filter(Boolean).length;
});
const edges = readFileSync(path.join(scratch, 'graph.jsonl'), 'utf8')
  .split('\n')
  .filter(Boolean)
  .slice(0, discovered)
  .map((line) => JSON.parse(line));
const isOurs = (url) => url.startsWith(distUrl);
const isBare = (specifier) => !/^(\.|\/|node:|file:|data:)/.test(specifier);
const entry = pathToFileURL(cli).href;
/** The import graph among our modules and the packages they name, each node's children in discovery order. */
const nodes = new Map([[entry, { label: 'dist/cli.js', spec: entry, ours: true, children: [] }]]);
for (const { parent, specifier, url } of edges) {
  if (!isOurs(parent) || !nodes.has(parent)) continue;
  if (!nodes.has(url)) {
    if (isOurs(url)) nodes.set(url, { label: `dist/${url.slice(distUrl.length)}`, spec: url, ours: true, children: [] });
    else if (isBare(specifier)) nodes.set(url, { label: `package ${specifier}`, spec: specifier, ours: false, children: [] });
    else continue;
  }
  const siblings = nodes.get(parent).children;
  if (!siblings.includes(url)) siblings.push(url);
}
// Depth-first from the entry: a module is first reached through one parent (the tree shown), and
// measured in post-order, dependencies before dependents, so its cost is its own (plus node builtins
// and package internals), never a dependency's.
const steps = [];
const visited = new Set([entry]);
(function visit(node, depth) {
  node.depth = depth;
  node.tree = [];
  for (const url of node.children) {
    if (visited.has(url)) continue;
    visited.add(url);
    const child = nodes.get(url);
    node.tree.push(child);
    visit(child, depth + 1);
    steps.push(child);
  }
})(nodes.get(entry), -1);

// Every measuring process first imports an empty file, so the one-time warm-up of the module loader
// is not charged to whatever comes first; another empty file, timed, shows the fixed cost of one import.
const warmUp = path.join(scratch, 'warm-up.mjs');
const emptyModule = path.join(scratch, 'empty.mjs');
writeFileSync(warmUp, 'export {};\n');
writeFileSync(emptyModule, 'export {};\n');

/** One fresh process: runs `setup` untimed, then times `timed`; null when either throws. */
function measure(setup, timed) {
  const script = `await import(${JSON.stringify(pathToFileURL(warmUp).href)});\n${setup}\nconst t0 = performance.now();\n${timed}\nprocess.stdout.write(JSON.stringify(performance.now() - t0));\nprocess.exit(0);`;
  const out = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: root,
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  return out.status === 0 ? Number(out.stdout) : null;
}
const load = (spec) => `await import(${JSON.stringify(spec)});`;
const loadQuietly = (spec) => `await import(${JSON.stringify(spec)}).catch(() => {});`;
const allImports = steps.map((s) => loadQuietly(s.spec)).join('\n');
/** Imports `file` (under dist/) and calls its export `name` with `args`; the import is untimed. */
const call = (file, name, args) => ({
  setup: `${allImports}\nconst { ${name}: fn } = await import(${JSON.stringify(new URL(file, distUrl).href)});\nif (typeof fn !== 'function') throw new Error();`,
  timed: `fn(${args});`,
});

const cells = []; // { row, kind, setup, timed, samples }
const cell = (row, kind, setup, timed) => cells.push({ row, kind, setup, timed, samples: [] });
steps.forEach((step, i) => {
  cell(
    step,
    'incremental',
    steps
      .slice(0, i)
      .map((s) => loadQuietly(s.spec))
      .join('\n'),
    load(step.spec),
  );
  if (!step.ours) cell(step, 'alone', '', load(step.spec));
});
const everything = { label: 'all of the above in one process' };
cell(everything, 'alone', '', allImports);
const calls = [
  {
    label: 'fixed cost of one import (an empty module, after all of the above)',
    setup: allImports,
    timed: load(pathToFileURL(emptyModule).href),
  },
  {
    label: 'findOpencodeBinary()',
    ...call('core/rollout/opencode-binary.js', 'findOpencodeBinary', 'process.env.OPENCODE_ENV_OPENCODE_BIN ?? null'),
  },
  { label: 'loadConfig(process.env)', ...call('config.js', 'loadConfig', 'process.env') },
  { label: "createLogger('warn')", ...call('log.js', 'createLogger', "'warn'") },
];
for (const c of calls) cell(c, 'incremental', c.setup, c.timed);
const bareImports = { label: 'bare server imports (zod, sdk mcp.js, sdk stdio.js)' };
cell(
  bareImports,
  'alone',
  '',
  ['zod', '@modelcontextprotocol/sdk/server/mcp.js', '@modelcontextprotocol/sdk/server/stdio.js'].map(load).join('\n'),
);

const phases = { ours: [], bare: [] };
const failed = new Set();
for (let run = 0; run < RUNS; run++) {
  // --- 1. whole starts, interleaved ---
  for (const [name, script] of [
    ['ours', cli],
    ['bare', bare],
  ]) {
    const probeOut = path.join(scratch, `probe-${name}-${run}.jsonl`);
    const spawnToAnswer = await startOnce(script, probe, { STARTUP_PROBE_OUT: probeOut });
    phases[name].push({ ...JSON.parse(readFileSync(probeOut, 'utf8').split('\n')[0]), spawnToAnswer });
  }
  // --- 2 and 3 ---
  for (const c of cells) {
    if (failed.has(c)) continue;
    const ms = measure(c.setup, c.timed);
    if (ms === null) failed.add(c);
    else c.samples.push(ms);
  }
  process.stderr.write(`run ${run + 1}/${RUNS}\n`);
}
rmSync(scratch, { recursive: true, force: true });

const median = (xs) => (xs.length === 0 ? NaN : [...xs].sort((a, b) => a - b)[Math.ceil(xs.length / 2) - 1]);
const ms = (x) => (Number.isNaN(x) ? 'n/a' : `${x.toFixed(1)} ms`);
const valueOf = (row, kind) => {
  const c = cells.find((x) => x.row === row && x.kind === kind);
  return c ? ms(median(c.samples)) : '';
};
function printTable(title, headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cs) => `| ${cs.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  console.log(`\n${title}\n`);
  console.log(line(headers));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows) console.log(line(r));
}

const phase = (name, key) => median(phases[name].map((p) => p[key]));
const phaseRows = [
  ['node boot (process start -> first statement)', 'boot'],
  ['listening on stdin (imports + set-up done)', 'listening'],
  ['initialize answer written', 'answered'],
  ['spawn -> answer, seen by the parent', 'spawnToAnswer'],
].map(([label, key]) => [
  label,
  ms(phase('ours', key)),
  ms(phase('bare', key)),
  ms(phase('ours', key) - phase('bare', key)),
  `${(phase('ours', key) / phase('bare', key)).toFixed(2)}x`,
]);
printTable(
  `1. phases of one start, ms since process start (medians of ${RUNS}, interleaved)`,
  ['phase', 'opencode-env', 'bare SDK server', 'difference', 'ratio'],
  phaseRows,
);

const self = (step) => median(cells.find((c) => c.row === step && c.kind === 'incremental').samples) || 0;
const total = (node) => self(node) + node.tree.reduce((acc, child) => acc + total(child), 0);
const importRows = [];
let folded = { count: 0, sum: 0 };
(function show(node) {
  for (const child of node.tree) {
    const sum = total(child);
    if (sum < MIN_MS) {
      folded = { count: folded.count + 1 + countBelow(child), sum: folded.sum + sum };
      continue;
    }
    importRows.push([`${'  '.repeat(child.depth)}${child.label}`, ms(sum), ms(self(child)), valueOf(child, 'alone')]);
    show(child);
  }
})(nodes.get(entry));
function countBelow(node) {
  return node.tree.reduce((acc, child) => acc + 1 + countBelow(child), 0);
}
if (folded.count > 0) importRows.push([`(${folded.count} more modules whose subtree costs < ${MIN_MS} ms)`, ms(folded.sum), '', '']);
const importSum = steps.reduce((acc, s) => acc + self(s), 0);
importRows.push(['sum of all own costs', ms(importSum), '', '']);
importRows.push([everything.label, '', '', valueOf(everything, 'alone')]);
importRows.push([bareImports.label, '', '', valueOf(bareImports, 'alone')]);
for (const c of calls) importRows.push([c.label.startsWith('fixed') ? c.label : `call: ${c.label}`, '', valueOf(c, 'incremental'), '']);
printTable(
  `2./3. imports of the stdio path (${steps.length} modules; a module is listed under the one that loads it first) and calls (medians of ${RUNS} fresh processes)`,
  ['import or call', 'with subtree', 'own', 'alone'],
  importRows,
);
