// Trace resources through the SDK's own stdio client (whose buffer stops at 10 MiB): a trace of more than 10 MiB
// read in parts, an interrupted trace found and listed, a version-1 trace, and junk URIs refused cleanly.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ReadResourceResult } from '@modelcontextprotocol/sdk/types.js';
import { MAX_ANSWER_BYTES, TraceStore } from '../src/core/traces.js';
import { isAlive } from '../src/util/process-tree.js';
import { exampleScript, exampleTask, startScripted } from './helpers/scripted.js';
import { cliPath, makeSystemTempDir, removeDir, startServer, waitFor, type RunningServer } from './helpers/server.js';
import { FIXTURE_ENDPOINT, makeResult, makeSpec, makeTurn } from './helpers/trace-fixtures.js';

const LARGE = 'rollout-20240102T030405Z-0000large';
const KILLED = 'rollout-20240102T030406Z-000killed';
const OLD = 'rollout-20230101T000000Z-00000old';
const HUGE_CONTENT = 'quote " backslash \\ euro € '.repeat(450_000); // ~13 MB of JSON once escaped

describe('trace resources over MCP stdio', () => {
  let dataDir: string;
  let server: RunningServer;
  const answerSizes: number[] = [];

  async function read(uri: string): Promise<string> {
    const answer: ReadResourceResult = await server.client.readResource({ uri });
    answerSizes.push(Buffer.byteLength(JSON.stringify(answer)));
    return (answer.contents[0] as { text: string }).text;
  }

  /** A document, whole or concatenated from its parts. */
  async function readDocument(uri: string): Promise<any> {
    const first = JSON.parse(await read(uri));
    if (!(Array.isArray(first.parts) && first.uri === uri)) return first;
    const parts: string[] = [];
    for (const part of first.parts as string[]) parts.push(await read(part));
    return JSON.parse(parts.join(''));
  }

  before(async () => {
    dataDir = makeSystemTempDir('trace-resources');
    const tracesDir = path.join(dataDir, 'traces');
    const info = (id: string) => ({ rollout_id: id, created_at: '2024-01-02T03:04:05.000Z', spec: makeSpec(), endpoint: FIXTURE_ENDPOINT });

    const writer = new TraceStore(tracesDir).begin(info(LARGE), []);
    writer.appendTurn(makeTurn(1));
    writer.appendTurn(makeTurn(2, HUGE_CONTENT));
    writer.appendTurn(makeTurn(3));
    await writer.finish(makeResult(LARGE));

    // What a SIGKILLed server leaves: a header and turns from a process that is gone, and no result.
    const { pid: deadPid } = spawnSync('true');
    const killed = path.join(tracesDir, `${KILLED}.jsonl`);
    const header = { type: 'header', version: 2, ...info(KILLED), writer_pid: deadPid, writer_start: 'gone:1' };
    writeFileSync(killed, `${JSON.stringify(header)}\n${JSON.stringify({ type: 'turn', data: makeTurn(1) })}\n`);
    appendFileSync(killed, '{"type":"turn","da');

    const old = { version: 1, rollout_id: OLD, created_at: '2023-01-01T00:00:00.000Z', finished_at: '2023-01-01T00:01:00.000Z' };
    writeFileSync(
      path.join(tracesDir, `${OLD}.json`),
      JSON.stringify({ ...old, spec: makeSpec(), result: makeResult(OLD), turns: [makeTurn(1)] }),
    );
    appendFileSync(
      path.join(tracesDir, 'index.jsonl'),
      `${JSON.stringify({ rollout_id: OLD, task_id: 'fixture-task', created_at: old.created_at, reward: 1, error: null, turns: 1 })}\n`,
    );

    server = await startServer({ env: { OPENCODE_ENV_DATA_DIR: dataDir } });
  });
  after(async () => {
    await server?.close();
    removeDir(dataDir);
  });

  it('lists every trace, the interrupted one marked so', async () => {
    const { resources } = await server.client.listResources();
    const uris = resources.map((r) => r.uri);
    for (const id of [LARGE, KILLED, OLD]) assert.ok(uris.includes(`opencode-env://traces/${id}`), `${id} is listed: ${uris.join(', ')}`);
    const killed = resources.find((r) => r.uri.endsWith(KILLED))!;
    assert.match(killed.description ?? '', /server stopped before the rollout finished/);
  });

  it('reads a trace of more than 10 MiB in parts, no answer over the limit', async () => {
    const main = await readDocument(`opencode-env://traces/${LARGE}`);
    assert.equal(main.rollout_id, LARGE);
    assert.equal(main.result.reward, 1);
    assert.equal(main.turns.length, 3);
    const huge = await readDocument(main.turns[1].uri);
    assert.deepEqual(huge, makeTurn(2, HUGE_CONTENT), 'the 13 MB turn reads back exactly');
    assert.deepEqual(await readDocument(main.turns[2].uri), makeTurn(3));
    assert.ok(answerSizes.length > 5, `read in several answers (${answerSizes.length})`);
    assert.ok(Math.max(...answerSizes) <= MAX_ANSWER_BYTES, `largest answer ${Math.max(...answerSizes)} bytes`);
  });

  it('reads the interrupted trace with error_kind "interrupted", and a version-1 trace whole', async () => {
    const killed = await readDocument(`opencode-env://traces/${KILLED}`);
    assert.equal(killed.result.error_kind, 'interrupted');
    assert.equal(killed.result.reward, null);
    assert.deepEqual(killed.turns, [makeTurn(1)]);
    const old = await readDocument(`opencode-env://traces/${OLD}`);
    assert.equal(old.version, 1);
    assert.deepEqual(old.turns, [makeTurn(1)]);
  });

  it('answers junk and traversal with a clean not-found error, and keeps serving', async () => {
    for (const uri of [
      'opencode-env://traces/../index',
      'opencode-env://traces/%2e%2e/%2e%2e/etc/passwd',
      `opencode-env://traces/${LARGE}/turns/%2e%2e/%2e%2e/index`,
      'opencode-env://traces/a%00b',
      `opencode-env://traces/${'x'.repeat(100_000)}`,
      `opencode-env://traces/${LARGE}/turns/9`,
      `opencode-env://traces/${LARGE}/turns/1/part/0`,
      'opencode-env://traces/index',
      'opencode-env://traces/rollout-does-not-exist',
    ]) {
      await assert.rejects(
        server.client.readResource({ uri }),
        (error: { code?: number; message: string }) => error.code === -32002 && /not found/i.test(error.message),
        `not found: ${uri.slice(0, 80)}`,
      );
    }
    const state = await server.callOk('get_state');
    assert.equal(typeof state.episode_id, 'string', 'the server answers the next call');
  });
});

describe('a server killed mid-rollout', () => {
  it('leaves a trace of the turns that completed, which the next start lists as interrupted', async () => {
    const script = exampleScript('script.json') as { turns: Array<Record<string, unknown>> };
    script.turns[1] = { ...script.turns[1], delay_ms: 120_000 }; // the agent's second step never comes back
    const llm = await startScripted(script);
    const server = await startServer();
    try {
      const call = server
        .call('run_rollout', { ...exampleTask(), task_id: 'killed', base_url: llm.url, model: 'scripted-model' })
        .catch(() => null);
      await waitFor(
        () => llm.requests.filter((q) => q.path === '/v1/chat/completions' && Array.isArray(q.body?.tools)).length >= 2,
        90_000,
        "the agent's second step",
      );
      process.kill(server.pid, 'SIGKILL');
      await waitFor(() => !isAlive(server.pid), 10_000, 'the server to die');
      await call;
      const listed = execFileSync(process.execPath, [cliPath, 'traces', 'list'], {
        env: { PATH: process.env.PATH, OPENCODE_ENV_DATA_DIR: server.dataDir },
        encoding: 'utf8',
      });
      assert.match(listed, /\tkilled\treward=null\tturns=[1-9]\d*\terror=the server stopped before the rollout finished/, listed);
    } finally {
      await server.close().catch(() => undefined);
      await llm.close();
    }
  });
});
