// The batch's plan and its resume bookkeeping (src/batch/plan.ts, results.ts): which (task, sample) pairs run,
// which results.jsonl already holds, and how a torn last line (SIGKILL mid-write) is treated.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { pairKey, pendingPairs, planPairs } from '../../src/batch/plan.js';
import { donePairs, parseResults, readResults, resultLine, ResultsWriter, type ResultLine } from '../../src/batch/results.js';
import { makeResult, makeTurn } from '../helpers/trace-fixtures.js';

function line(taskId: string, sample: number, overrides: Partial<ResultLine> = {}): ResultLine {
  return {
    ...resultLine({ taskId, sample, groupId: taskId }, makeResult(`r-${taskId}-${sample}`, { reward: 1 }), 1),
    ...overrides,
  };
}

describe('batch plan', () => {
  it('plans K samples per task, task by task, with the task as the group', () => {
    const pairs = planPairs(['a', 'b'], 3);
    assert.deepEqual(
      pairs.map((p) => `${p.taskId}/${p.sample}/${p.groupId}`),
      ['a/0/a', 'a/1/a', 'a/2/a', 'b/0/b', 'b/1/b', 'b/2/b'],
    );
  });

  it('skips the pairs already recorded, and nothing is left when all are', () => {
    const pairs = planPairs(['a', 'b'], 2);
    const pending = pendingPairs(pairs, donePairs([line('a', 1), line('b', 0)]));
    assert.deepEqual(
      pending.map((p) => pairKey(p.taskId, p.sample)),
      [pairKey('a', 0), pairKey('b', 1)],
    );
    assert.equal(pendingPairs(pairs, donePairs(pairs.map((p) => line(p.taskId, p.sample)))).length, 0);
  });

  it('keeps pair keys apart for ids that would collide when joined naively', () => {
    assert.notEqual(pairKey('a:1', 2), pairKey('a', 12));
  });
});

describe('batch results', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'batch-results-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('sums prompt and completion tokens over agent turns only, and records the attempt count', () => {
    const title = { ...makeTurn(1), kind: 'title' as const, usage: { prompt_tokens: 1000, completion_tokens: 1000 } };
    const a = { ...makeTurn(2), usage: { prompt_tokens: 10, completion_tokens: 3 } };
    const b = { ...makeTurn(3), usage: { prompt_tokens: 20, completion_tokens: 4 } };
    const result = makeResult('r1', { proxy_turns: [title, a, b], reward: 0.5, error: null, budget_exhausted: 'max_llm_calls' });
    const row = resultLine({ taskId: 't', sample: 3, groupId: 't' }, result, 2);
    assert.equal(row.prompt_tokens, 30);
    assert.equal(row.completion_tokens, 7);
    assert.equal(row.llm_calls, 2);
    assert.equal(row.attempts, 2);
    assert.equal(row.rollout_id, 'r1');
    assert.equal(row.budget_exhausted, 'max_llm_calls');
    assert.equal(row.sample, 3);
  });

  it('ignores a torn last line and refuses a damaged complete one', () => {
    const text = `${JSON.stringify(line('a', 0))}\n${JSON.stringify(line('a', 1)).slice(0, 40)}`;
    const parsed = parseResults(text);
    assert.equal(parsed.lines.length, 1);
    assert.ok(parsed.tornBytes > 0, 'the torn tail is measured');
    assert.throws(() => parseResults(`${JSON.stringify(line('a', 0))}\n{oops\n${JSON.stringify(line('a', 1))}\n`), /:2: not a JSON line/);
  });

  it('drops a torn tail before appending, so every new line starts on its own', async () => {
    const file = path.join(dir, 'results.jsonl');
    writeFileSync(file, `${JSON.stringify(line('a', 0))}\n{"task_id":"a","sam`);
    const writer = await ResultsWriter.open(file);
    await writer.append(line('a', 1));
    await writer.append(line('b', 0));
    await writer.close();
    const { lines, tornBytes } = await readResults(file);
    assert.equal(tornBytes, 0);
    assert.deepEqual(
      lines.map((l) => `${l.task_id}/${l.sample}`),
      ['a/0', 'a/1', 'b/0'],
    );
    assert.ok(readFileSync(file, 'utf8').endsWith('\n'), 'the file ends with a whole line');
  });

  it('reads a missing results file as empty', async () => {
    assert.deepEqual(await readResults(path.join(dir, 'none.jsonl')), { lines: [], tornBytes: 0 });
  });
});
