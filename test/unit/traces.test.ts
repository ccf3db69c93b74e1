// The trace store: incremental JSONL writing (order, scrubbing, the size budget), version-1 traces, interrupted
// traces, a full disk, and resources in parts that no answer over MAX_ANSWER_BYTES carries.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MAX_ANSWER_BYTES, parseTraceUri, TraceStore, trainingExampleChunks, type TraceContent } from '../../src/core/traces.js';
import { jsonBytes } from '../../src/core/trace/json-size.js';
import { FIXTURE_ENDPOINT, makeResult, makeSpec, makeTurn } from '../helpers/trace-fixtures.js';

const scratch: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'opencode-env-traces-'));
  scratch.push(dir);
  return dir;
}
after(() => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

function lines(file: string): Array<Record<string, any>> {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line));
}

function info(rolloutId: string, spec = makeSpec()) {
  return { rollout_id: rolloutId, created_at: '2024-01-02T03:04:05.000Z', spec, endpoint: FIXTURE_ENDPOINT };
}

async function read(store: TraceStore, uri: string): Promise<TraceContent> {
  const ref = parseTraceUri(uri);
  assert.ok(ref, `a trace URI: ${uri}`);
  const content = await store.readResource(ref);
  assert.ok(content, `${uri} exists`);
  // What the answer costs on the wire: the text JSON-escaped inside a JSON-RPC message.
  assert.ok(Buffer.byteLength(JSON.stringify(content.text)) + 1024 <= MAX_ANSWER_BYTES, `${uri} fits one answer`);
  return content;
}

/** A document read whole or, when it is split, part by part. */
async function readDocument(store: TraceStore, uri: string): Promise<any> {
  const first = JSON.parse((await read(store, uri)).text);
  if (!Array.isArray(first.parts) || first.uri !== uri) return first;
  let text = '';
  for (const part of first.parts as string[]) text += (await read(store, part)).text;
  assert.equal(Buffer.byteLength(text), first.bytes, 'the parts add up to the announced size');
  return JSON.parse(text);
}

describe('TraceWriter', () => {
  it('writes a header, each turn in order and a result line, and lists and reads the trace', async () => {
    const dir = tempDir();
    const store = new TraceStore(dir);
    const stored: string[] = [];
    store.onStored((id) => stored.push(id));
    const writer = store.begin(info('rollout-order'), []);
    for (let n = 1; n <= 5; n += 1) writer.appendTurn(makeTurn(n));
    await writer.finish(makeResult('rollout-order'));

    const [header, ...rest] = lines(path.join(dir, 'rollout-order.jsonl'));
    assert.equal(header!.type, 'header');
    assert.equal(header!.version, 2);
    assert.equal(header!.rollout_id, 'rollout-order');
    assert.equal(header!.writer_pid, process.pid);
    assert.equal(header!.spec.instruction, 'write fizzbuzz.py');
    assert.deepEqual(
      rest.slice(0, -1).map((line) => [line.type, line.data.turn]),
      [1, 2, 3, 4, 5].map((n) => ['turn', n]),
      'turns in the order they came',
    );
    assert.equal(rest.at(-1)!.type, 'result');
    assert.ok(rest.at(-1)!.finished_at, 'the result line says when');
    assert.deepEqual(stored, ['rollout-order'], 'listeners hear of it once');

    const [summary] = await store.list();
    assert.deepEqual(
      { id: summary!.rollout_id, reward: summary!.reward, turns: summary!.turns, kind: summary!.error_kind },
      { id: 'rollout-order', reward: 1, turns: 5, kind: null },
    );
    const whole = JSON.parse((await read(store, 'opencode-env://traces/rollout-order')).text);
    assert.deepEqual(Object.keys(whole), ['version', 'rollout_id', 'created_at', 'finished_at', 'spec', 'result', 'turns']);
    assert.deepEqual(whole.turns[2], makeTurn(3), 'a full turn, as recorded');
    assert.deepEqual(JSON.parse((await read(store, 'opencode-env://traces/rollout-order/turns/3')).text), makeTurn(3));
  });

  it('keeps the API key out of every line and the index, and never stores api_key', async () => {
    const dir = tempDir();
    const secret = 'sk-live-0123456789"quoted';
    const store = new TraceStore(dir);
    const writer = store.begin(info('rollout-secret', makeSpec({ api_key: secret, instruction: `use ${secret}` })), [secret]);
    writer.appendTurn(makeTurn(1, `the key is ${secret} and again ${JSON.stringify(secret)}`));
    await writer.finish(makeResult('rollout-secret', { error: `upstream said ${secret}`, reward: null, error_kind: 'upstream' }));
    for (const name of readdirSync(dir)) {
      const text = readFileSync(path.join(dir, name), 'utf8');
      assert.ok(!text.includes('sk-live-0123456789'), `no key in ${name}`);
    }
    const [header] = lines(path.join(dir, 'rollout-secret.jsonl'));
    assert.equal('api_key' in header!.spec, false, 'api_key is not stored');
  });

  it('stores turns past the budget without their bodies, saying so with sizes, and keeps later turns stripped', async () => {
    const dir = tempDir();
    const budget = 64 * 1024;
    const store = new TraceStore(dir, { maxTraceBytes: budget });
    const writer = store.begin(info('rollout-budget'), []);
    writer.appendTurn(makeTurn(1, 'a'.repeat(20_000)));
    writer.appendTurn(makeTurn(2, 'b'.repeat(20_000)));
    writer.appendTurn(makeTurn(3, 'c'.repeat(40_000))); // would pass 64 KiB
    writer.appendTurn(makeTurn(4, 'small')); // after the budget was reached: stripped too
    await writer.finish(makeResult('rollout-budget'));

    const turns = lines(path.join(dir, 'rollout-budget.jsonl'))
      .filter((line) => line.type === 'turn')
      .map((line) => line.data);
    assert.equal(turns.length, 4, 'every turn is stored');
    assert.equal(turns[1].request.messages[0].content.length, 20_000, 'turns within the budget are whole');
    const [third, fourth] = [turns[2], turns[3]];
    assert.equal(third.request, null);
    assert.equal(third.response, null);
    assert.equal(third.prompt_token_ids, null);
    assert.equal(third.turn, 3, 'the turn keeps its metadata');
    assert.equal(third.dropped.reason, 'trace_budget');
    assert.match(third.dropped.message, /would take the trace past the trace budget of 65536 bytes \(OPENCODE_ENV_MAX_TRACE_MB\)/);
    assert.ok(third.dropped.turn_bytes > 40_000, `the full size is reported: ${third.dropped.turn_bytes}`);
    assert.ok(third.dropped.field_bytes.request > 40_000, 'with the size of each dropped field');
    assert.ok(third.dropped.written_bytes > 40_000 && third.dropped.written_bytes < budget);
    assert.equal(fourth.request, null);
    assert.match(fourth.dropped.message, /an earlier turn reached the trace budget/);

    const whole = JSON.parse((await read(store, 'opencode-env://traces/rollout-budget')).text);
    assert.equal(whole.turns[2].dropped.reason, 'trace_budget', 'readers see the marker');
  });

  it('stores a turn that cannot be serialised without its bodies, and never throws', async () => {
    const dir = tempDir();
    const store = new TraceStore(dir);
    const writer = store.begin(info('rollout-bigint'), []);
    const turn = makeTurn(1);
    (turn.request as Record<string, unknown>).seed = 10n; // JSON.stringify throws on a BigInt, as on a string too long
    assert.doesNotThrow(() => writer.appendTurn(turn));
    writer.appendTurn(makeTurn(2));
    await writer.finish(makeResult('rollout-bigint'));
    const turns = lines(path.join(dir, 'rollout-bigint.jsonl')).filter((line) => line.type === 'turn');
    assert.equal(turns[0]!.data.dropped.reason, 'unserialisable');
    assert.match(turns[0]!.data.dropped.message, /BigInt/);
    assert.equal(turns[1]!.data.request.messages[0].content, 'message 2', 'later turns are whole');
  });

  it('ignores turns after finish, and finish twice is one finish', async () => {
    const dir = tempDir();
    const store = new TraceStore(dir);
    const writer = store.begin(info('rollout-twice'), []);
    writer.appendTurn(makeTurn(1));
    const first = writer.finish(makeResult('rollout-twice'));
    writer.appendTurn(makeTurn(2));
    assert.equal(writer.finish(makeResult('rollout-twice')), first);
    await first;
    assert.deepEqual(
      lines(path.join(dir, 'rollout-twice.jsonl')).map((line) => line.type),
      ['header', 'turn', 'result'],
    );
  });
});

describe('version-1 traces (one JSON document)', () => {
  it('are listed, read, shown and exported as before', async () => {
    const dir = tempDir();
    const record = {
      version: 1,
      rollout_id: 'rollout-old',
      created_at: '2023-01-01T00:00:00.000Z',
      finished_at: '2023-01-01T00:01:00.000Z',
      spec: makeSpec(),
      result: makeResult('rollout-old'),
      turns: [makeTurn(1), makeTurn(2)],
    };
    writeFileSync(path.join(dir, 'rollout-old.json'), JSON.stringify(record));
    writeFileSync(
      path.join(dir, 'index.jsonl'),
      `${JSON.stringify({ rollout_id: 'rollout-old', task_id: 'fixture-task', created_at: record.created_at, reward: 1, error: null, turns: 2 })}\n`,
    );
    const store = new TraceStore(dir);
    assert.deepEqual(
      (await store.list()).map((s) => s.rollout_id),
      ['rollout-old'],
    );
    assert.deepEqual(JSON.parse((await read(store, 'opencode-env://traces/rollout-old')).text), record);
    let shown = '';
    for await (const chunk of (await store.documentChunks('rollout-old'))!) shown += chunk;
    assert.deepEqual(JSON.parse(shown), record);
    const exported: string[] = [];
    for await (const trace of store.all()) for await (const chunk of trainingExampleChunks(trace)) exported.push(chunk);
    const example = JSON.parse(exported.join(''));
    assert.equal(example.rollout_id, 'rollout-old');
    assert.equal(example.turns.length, 2);
    assert.deepEqual(example.turns[0].completion_token_ids, [11, 12]);
  });

  it('over the answer limit, are served in slices of their text', async () => {
    const dir = tempDir();
    const record = {
      version: 1,
      rollout_id: 'rollout-big-old',
      spec: makeSpec(),
      result: makeResult('rollout-big-old'),
      turns: [makeTurn(1, 'é"'.repeat(2_500_000))],
    };
    writeFileSync(path.join(dir, 'rollout-big-old.json'), JSON.stringify(record));
    const store = new TraceStore(dir);
    assert.deepEqual(await readDocument(store, 'opencode-env://traces/rollout-big-old'), record);
    assert.equal(await store.readResource({ rolloutId: 'rollout-big-old', turn: 1, part: null }), null, 'version 1 has no turn resources');
  });
});

/** Writes an unfinished trace as a killed server leaves it: header, turns, and half a line. */
function writeUnfinished(dir: string, rolloutId: string, writer: { pid: number; start: string | null }): string {
  const file = path.join(dir, `${rolloutId}.jsonl`);
  const header = { type: 'header', version: 2, ...info(rolloutId), writer_pid: writer.pid, writer_start: writer.start };
  writeFileSync(file, `${JSON.stringify(header)}\n`);
  for (let n = 1; n <= 2; n += 1) appendFileSync(file, `${JSON.stringify({ type: 'turn', data: makeTurn(n) })}\n`);
  appendFileSync(file, '{"type":"turn","data":{"turn":3,"req'); // torn by the kill
  return file;
}

function deadPid(): number {
  const { pid } = spawnSync('true');
  assert.ok(pid, 'a process ran');
  return pid;
}

describe('interrupted traces', () => {
  it('are finished as interrupted on first use, listed, and readable', async () => {
    const dir = tempDir();
    const file = writeUnfinished(dir, 'rollout-killed', { pid: deadPid(), start: 'another-boot:1' });
    const store = new TraceStore(dir);
    const [summary] = await store.list();
    assert.equal(summary?.rollout_id, 'rollout-killed');
    assert.equal(summary?.error_kind, 'interrupted');
    assert.equal(summary?.reward, null);
    assert.equal(summary?.turns, 2);

    const stored = lines(file);
    assert.deepEqual(
      stored.map((line) => line.type),
      ['header', 'turn', 'turn', 'result'],
      'the torn line is cut off and a result appended',
    );
    const { result } = stored.at(-1)!;
    assert.equal(result.error_kind, 'interrupted');
    assert.match(result.error, /server stopped before the rollout finished/);
    assert.equal(result.proxy_turns.length, 2);
    assert.equal(result.task_id, 'fixture-task');
    const whole = JSON.parse((await read(store, 'opencode-env://traces/rollout-killed')).text);
    assert.equal(whole.result.error_kind, 'interrupted');
    assert.equal(whole.turns.length, 2);

    await new TraceStore(dir).list();
    assert.equal(lines(file).length, 4, 'marked once');
    assert.equal(readFileSync(path.join(dir, 'index.jsonl'), 'utf8').trim().split('\n').length, 1, 'indexed once');
  });

  it('are recovered when first read, before any listing', async () => {
    const dir = tempDir();
    writeUnfinished(dir, 'rollout-read-first', { pid: deadPid(), start: null });
    const whole = JSON.parse((await read(new TraceStore(dir), 'opencode-env://traces/rollout-read-first')).text);
    assert.equal(whole.result.error_kind, 'interrupted');
  });

  it('treat a reused pid (same pid, another process start) as dead', async () => {
    const dir = tempDir();
    writeUnfinished(dir, 'rollout-reused-pid', { pid: process.pid, start: 'some-other-boot:42' });
    const [summary] = await new TraceStore(dir).list();
    assert.equal(summary?.error_kind, 'interrupted');
  });

  it('leave a trace whose writer is alive alone, and list it once it finishes', async () => {
    const dir = tempDir();
    const writer = new TraceStore(dir).begin(info('rollout-running'), []);
    writer.appendTurn(makeTurn(1));
    const other = new TraceStore(dir); // as `opencode-env traces list` would, while the server runs
    assert.deepEqual(await other.list(), []);
    await writer.finish(makeResult('rollout-running'));
    assert.deepEqual(
      (await other.list()).map((s) => [s.rollout_id, s.error_kind]),
      [['rollout-running', null]],
    );
  });

  it('are listed even when their index line was lost', async () => {
    const dir = tempDir();
    const store = new TraceStore(dir);
    const writer = store.begin(info('rollout-unindexed'), []);
    await writer.finish(makeResult('rollout-unindexed'));
    rmSync(path.join(dir, 'index.jsonl'));
    assert.deepEqual(
      (await new TraceStore(dir).list()).map((s) => s.rollout_id),
      ['rollout-unindexed'],
    );
  });
});

describe('a full disk', { skip: process.getuid?.() !== 0 ? 'mounting a tmpfs needs root' : false }, () => {
  let mountPoint: string;
  before(() => {
    mountPoint = tempDir();
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mountPoint]);
  });
  after(() => {
    execFileSync('umount', [mountPoint]);
  });

  it('makes finish reject naming the file and "disk full (ENOSPC)", and leaves no trace file behind', async () => {
    const dir = path.join(mountPoint, 'traces');
    const store = new TraceStore(dir);
    const writer = store.begin(info('rollout-full'), []);
    for (let n = 1; n <= 6; n += 1) writer.appendTurn(makeTurn(n, 'x'.repeat(300_000)));
    await assert.rejects(writer.finish(makeResult('rollout-full')), (error: Error) => {
      assert.match(error.message, /could not write .*rollout-full\.jsonl: disk full \(ENOSPC\)/);
      return true;
    });
    assert.deepEqual(
      readdirSync(dir).filter((name) => name.includes('rollout-full')),
      [],
      'no half-written trace',
    );
    assert.deepEqual(await store.list(), []);

    // The space is free again: the next trace stores.
    const next = store.begin(info('rollout-after'), []);
    next.appendTurn(makeTurn(1));
    await next.finish(makeResult('rollout-after'));
    assert.deepEqual(
      (await store.list()).map((s) => s.rollout_id),
      ['rollout-after'],
    );
    rmSync(path.join(dir, 'rollout-after.jsonl'));
  });

  it('also when only the result line no longer fits', async () => {
    const dir = path.join(mountPoint, 'traces');
    mkdirSync(dir, { recursive: true });
    const store = new TraceStore(dir);
    const writer = store.begin(info('rollout-full-at-end'), []);
    writer.appendTurn(makeTurn(1));
    const filler = path.join(mountPoint, 'filler');
    // Fill what is left, once the turn is on disk.
    await new Promise((resolve) => setTimeout(resolve, 50));
    try {
      for (;;) appendFileSync(filler, Buffer.alloc(64 * 1024));
    } catch (error) {
      assert.equal((error as NodeJS.ErrnoException).code, 'ENOSPC');
    }
    await assert.rejects(writer.finish(makeResult('rollout-full-at-end', { files: { big: 'y'.repeat(200_000) } })), /disk full \(ENOSPC\)/);
    assert.deepEqual(
      readdirSync(dir).filter((name) => name.includes('rollout-full-at-end')),
      [],
      'no unfinished trace left',
    );
    rmSync(filler);
  });
});

describe('trace resources in parts', () => {
  it('serve a trace over the answer limit as a summary with a URI per turn, and a huge turn in slices', async () => {
    const dir = tempDir();
    const store = new TraceStore(dir);
    const writer = store.begin(info('rollout-large'), []);
    const turns = [
      makeTurn(1, 'a'.repeat(1_500_000)),
      makeTurn(2, '€"\\'.repeat(2_000_000)),
      makeTurn(3),
      makeTurn(4, '😀'.repeat(1_000_000)),
    ];
    for (const turn of turns) writer.appendTurn(turn);
    await writer.finish(makeResult('rollout-large', { proxy_turns: [] }));

    const main = JSON.parse((await read(store, 'opencode-env://traces/rollout-large')).text);
    assert.equal(main.rollout_id, 'rollout-large');
    assert.equal(main.result.reward, 1);
    assert.equal('proxy_turns' in main.result, false, 'the full turns hold them');
    assert.match(main.note, /read the full turn at its uri/);
    assert.deepEqual(
      main.turns.map((t: any) => [t.turn, t.uri]),
      [1, 2, 3, 4].map((n) => [n, `opencode-env://traces/rollout-large/turns/${n}`]),
    );
    for (const [index, brief] of main.turns.entries()) {
      assert.deepEqual(await readDocument(store, brief.uri), turns[index], `turn ${index + 1} reads back whole`);
    }
    const split = JSON.parse((await read(store, 'opencode-env://traces/rollout-large/turns/2')).text);
    assert.ok(split.parts.length >= 4, `the 14 MB turn comes in parts: ${split.parts.length}`);
    assert.equal(split.parts[0], 'opencode-env://traces/rollout-large/turns/2/part/0');
    const small = await read(store, 'opencode-env://traces/rollout-large/turns/3');
    assert.deepEqual(JSON.parse(small.text), turns[2], 'a small turn is served whole');

    for (const missing of [
      'opencode-env://traces/rollout-large/turns/5',
      'opencode-env://traces/rollout-large/turns/3/part/0',
      `opencode-env://traces/rollout-large/turns/2/part/${split.parts.length}`,
      'opencode-env://traces/rollout-large/part/0',
      'opencode-env://traces/rollout-missing',
    ]) {
      assert.equal(await store.readResource(parseTraceUri(missing)!), null, `${missing} is not found`);
    }
  });

  it('split a summary that is itself too large (thousands of turns)', async () => {
    const dir = tempDir();
    const store = new TraceStore(dir);
    const writer = store.begin(info('rollout-many'), []);
    for (let n = 1; n <= 20_000; n += 1) writer.appendTurn(makeTurn(n, 'z'.repeat(200)));
    await writer.finish(makeResult('rollout-many'));
    const main = await readDocument(store, 'opencode-env://traces/rollout-many');
    assert.equal(main.turns.length, 20_000);
    assert.deepEqual(await readDocument(store, main.turns[19_999].uri), makeTurn(20_000, 'z'.repeat(200)));
  });
});

describe('parseTraceUri', () => {
  it('accepts the trace, its turns and parts', () => {
    assert.deepEqual(parseTraceUri('opencode-env://traces/rollout-1'), { rolloutId: 'rollout-1', turn: null, part: null });
    assert.deepEqual(parseTraceUri('opencode-env://traces/rollout-1/turns/12'), { rolloutId: 'rollout-1', turn: 12, part: null });
    assert.deepEqual(parseTraceUri('opencode-env://traces/rollout-1/turns/12/part/0'), { rolloutId: 'rollout-1', turn: 12, part: 0 });
    assert.deepEqual(parseTraceUri('opencode-env://traces/rollout-1/part/3'), { rolloutId: 'rollout-1', turn: null, part: 3 });
  });

  it('refuses junk and traversal', () => {
    for (const junk of [
      'opencode-env://traces/../index',
      'opencode-env://traces/%2e%2e/%2e%2e/etc/passwd',
      'opencode-env://traces/rollout-1/../../x',
      'opencode-env://traces/a%00b',
      'opencode-env://traces/a\0b',
      'opencode-env://traces/.hidden',
      'opencode-env://traces/index.jsonl/../x',
      `opencode-env://traces/${'a'.repeat(129)}`,
      'opencode-env://traces/rollout-1/turns/0',
      'opencode-env://traces/rollout-1/turns/01',
      'opencode-env://traces/rollout-1/turns/-1',
      'opencode-env://traces/rollout-1/turns/99999999999',
      'opencode-env://traces/rollout-1/part/',
      'opencode-env://traces/rollout-1?x=1',
      'opencode-env://traces/rollout-1/',
      'opencode-env://other/rollout-1',
      '',
    ]) {
      assert.equal(parseTraceUri(junk), null, `refused: ${JSON.stringify(junk)}`);
    }
  });
});

describe('jsonBytes', () => {
  it('is the UTF-8 size of JSON.stringify, without building it', () => {
    const values: unknown[] = [
      null,
      true,
      false,
      0,
      -0,
      -1.5e-7,
      123456789012,
      NaN,
      Infinity,
      '',
      'plain',
      'quote " backslash \\ slash / newline \n tab \t nul \u0000 bell \u0007 del \u007f',
      'é € 😀 \u2028',
      'lone \ud800 high, lone \udc00 low, at the end \ud83d',
      [1, undefined, () => 1, Symbol('s'), null, 'x'],
      { a: 1, b: undefined, c: () => 1, d: { e: [{}, []] }, 'k"é': 'v' },
      { when: new Date(Date.UTC(2024, 0, 2)) },
      makeTurn(7, 'content with "quotes" and é'),
      'long: "q" \\ \n \r \t é € 😀 '.repeat(100),
      'long with a control character \u0001 '.repeat(20),
      'long with a lone surrogate \udfff '.repeat(20),
      [],
      {},
    ];
    for (const value of values) {
      assert.equal(jsonBytes(value), Buffer.byteLength(JSON.stringify(value)), `size of ${JSON.stringify(value)}`);
    }
  });

  it('throws where JSON.stringify throws', () => {
    assert.throws(() => jsonBytes({ n: 1n }), TypeError);
  });
});
