/**
 * npm run reliability: attacks the built server (dist/cli.js) over MCP stdio and in HTTP mode the way a hostile agent, a
 * careless host and a bad day would, and prints a table of what was sent, what came back and whether that
 * was right. After every case the server must answer the next call, exit when its client goes away, and
 * leave no sandbox process or directory behind; at the end, no configured key may appear in any tool
 * result, resource, stderr line, stored file or upstream request body of the whole run.
 *
 * Usage: node --import tsx reliability/run.ts [case ids or id prefixes, e.g. 3 7a]
 */
import { cases } from './cases/index.js';
import { runCases, type Outcome } from './harness.js';
import { KEYS, keyScan } from './secrets.js';
import { renderTable, type Row } from './table.js';

/** Cases that may share the 2-core machine at once. */
const PARALLEL = 3;

const filters = process.argv.slice(2);
const selected = filters.length ? cases.filter((c) => filters.some((f) => c.id === f || c.id.startsWith(f))) : cases;
if (selected.length === 0) {
  console.error(`no case matches ${filters.join(' ')}; ids: ${cases.map((c) => c.id).join(' ')}`);
  process.exit(2);
}

const started = performance.now();
const clock = () => `[${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s]`;
console.error(`${clock()} reliability: ${selected.length} cases, up to ${PARALLEL} at a time`);
const outcomes = await runCases(selected, PARALLEL, (o: Outcome) => {
  console.error(`${clock()} ${o.status} ${o.testCase.id} ${o.testCase.title} (${o.seconds.toFixed(1)} s)`);
});

const leaks = keyScan.leaks;
const scanRow: Row = {
  id: 'keys',
  title: 'no key anywhere in the run',
  sent: `${Object.keys(KEYS).length} fake keys: server OPENAI_API_KEY / VLLM_API_KEY, a caller api_key, base_url credentials`,
  cameBack: `${keyScan.items} items scanned (${(keyScan.bytes / 1e6).toFixed(1)} MB): tool results, resources, stderr, stored files, upstream bodies; ${leaks.length} hits`,
  status: leaks.length ? 'FAIL' : 'PASS',
  seconds: null,
};
const rows: Row[] = outcomes.map((o) => ({
  id: o.testCase.id,
  title: o.testCase.title,
  sent: o.testCase.sent,
  cameBack: o.cameBack,
  status: o.status,
  seconds: o.seconds,
}));
console.log(renderTable([...rows, scanRow]));

const failed = outcomes.filter((o) => o.status === 'FAIL');
for (const o of failed) console.log(`\nFAIL ${o.testCase.id} ${o.testCase.title}\n${o.failures.map((f) => `  - ${f}`).join('\n')}`);
if (leaks.length) {
  const byPlace = [...new Set(leaks.map((l) => `  - ${l.key} key in ${l.where}`))];
  console.log(`\nFAIL keys: ${leaks.length} hits\n${byPlace.slice(0, 40).join('\n')}`);
}
const skipped = outcomes.filter((o) => o.status === 'SKIP').length;
const total = ((performance.now() - started) / 1000).toFixed(1);
console.log(
  `\n${outcomes.length - failed.length - skipped} passed, ${failed.length + (leaks.length ? 1 : 0)} failed, ${skipped} skipped, ${total} s`,
);
process.exitCode = failed.length > 0 || leaks.length > 0 ? 1 : 0;
