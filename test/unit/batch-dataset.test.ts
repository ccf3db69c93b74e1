// Datasets for `opencode-env batch` (src/batch/dataset.ts): a JSONL file or a directory of task JSON files,
// validated whole before anything runs, each problem naming its line or file and field.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { loadDataset } from '../../src/batch/dataset.js';

describe('batch datasets', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'batch-dataset-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string) => {
    const file = path.join(dir, name);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, text);
    return file;
  };

  it('reads a JSONL file, one task per line, with the command line’s endpoint on top', async () => {
    const file = write(
      'ok.jsonl',
      `${JSON.stringify({ task_id: 'a', instruction: 'do a', endpoint: 'vllm' })}\n\n${JSON.stringify({ task_id: 'b', instruction: 'do b' })}\n`,
    );
    const { kind, tasks } = await loadDataset(file, { base_url: 'http://127.0.0.1:9/v1', model: 'm' });
    assert.equal(kind, 'jsonl');
    assert.deepEqual(
      tasks.map((t) => [t.taskId, t.spec.base_url, t.spec.model, t.spec.endpoint]),
      [
        ['a', 'http://127.0.0.1:9/v1', 'm', undefined],
        ['b', 'http://127.0.0.1:9/v1', 'm', undefined],
      ],
    );
    assert.equal(tasks[0]!.spec.agent_timeout_s, 600, 'defaults applied');
  });

  it('reports every problem at once, by line and field: bad JSON, schema errors, a missing or repeated task_id', async () => {
    await assert.rejects(
      loadDataset(write('notjson.jsonl', '{"task_id":"a","instruction":"x"}\n{not json\n')),
      /notjson\.jsonl:2: not JSON/,
    );
    const file = write(
      'bad.jsonl',
      [
        { task_id: 'a', instruction: 'x' },
        { task_id: 'b', instruction: 'x', max_tokens_cap: -1 },
        { instruction: 'no id' },
        { task_id: 'a', instruction: 'again' },
        { task_id: 'c', instruction: 'x', bogus: 1 },
      ]
        .map((task) => JSON.stringify(task))
        .join('\n'),
    );
    await assert.rejects(loadDataset(file), (error: Error) => {
      assert.match(error.message, /4 problems/);
      assert.match(error.message, /bad\.jsonl:2: max_tokens_cap: /);
      assert.match(error.message, /bad\.jsonl:3: task_id: required/);
      assert.match(error.message, /bad\.jsonl:4: task_id: "a" is also the id of .*bad\.jsonl:1/);
      assert.match(error.message, /bad\.jsonl:5: .*bogus/);
      return true;
    });
  });

  it('reads a directory of task JSON files, naming tasks after their files unless they carry a task_id', async () => {
    write('tasks/one.json', JSON.stringify({ instruction: 'one' }));
    write('tasks/two.json', JSON.stringify({ instruction: 'two', task_id: 'second' }));
    write('tasks/notes.txt', 'ignored');
    const { kind, tasks } = await loadDataset(path.join(dir, 'tasks'));
    assert.equal(kind, 'json-dir');
    assert.deepEqual(
      tasks.map((t) => [t.taskId, t.spec.task_id]),
      [
        ['one', 'one'],
        ['second', 'second'],
      ],
    );
  });

  it('names what a dataset must be when it is nothing it knows', async () => {
    mkdirSync(path.join(dir, 'empty'));
    await assert.rejects(loadDataset(path.join(dir, 'empty')), /task JSON files \(\*\.json\) or Harbor tasks/);
    await assert.rejects(loadDataset(path.join(dir, 'missing')), /no such file or directory/);
  });
});
