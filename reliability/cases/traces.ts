import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { exampleScript, exampleTask, type ScriptedLlm } from '../../test/helpers/scripted.js';
import { waitFor } from '../../test/helpers/server.js';
import { agentRuns, PY_LLM_CLIENT, python, STALLED_AGENT } from '../agent.js';
import type { Case, CaseContext } from '../harness.js';
import type { Server } from '../server.js';
import { awaitTraces, readTraceTree, tracesOf } from '../traces.js';

const MiB = 1024 * 1024;

/** Agent requests (with tools) the model has received: opencode's real calls, not its title request. */
function agentCalls(llm: ScriptedLlm): number {
  return llm.requests.filter((q) => q.path.endsWith('/chat/completions') && Array.isArray(q.body?.tools)).length;
}

/** Starts `count` rollouts against a model that never answers, and resolves once each is waiting on it. */
async function startStalledRollouts(t: CaseContext, server: Server, prefix: string, count: number): Promise<ScriptedLlm> {
  const llm = await t.scripted(STALLED_AGENT);
  for (let i = 1; i <= count; i++) {
    server
      .call('run_rollout', { instruction: 'wait', verify: ['true'], task_id: `${prefix}-${i}`, base_url: llm.url, model: 'scripted-model' })
      .catch(() => undefined);
  }
  await waitFor(() => agentCalls(llm) >= count, 90_000, `${count} rollouts to call the model`);
  return llm;
}

/** The agent sends two chat requests of `mb` MB straight to its LLM URL; the server's memory and trace are checked. */
function bigRequestsCase(id: string, limitMb: number | null, mb: number, maxRssMiB: number): Case {
  return {
    id,
    title: `trace size: two ${mb} MB requests${limitMb ? `, limit ${limitMb} MB` : ''}`,
    sent: `agent POSTs two ${mb} MB chat requests to its LLM URL${limitMb ? ` (OPENCODE_ENV_MAX_REQUEST_MB=${limitMb})` : ' (default limit)'}; server VmHWM must stay < ${maxRssMiB} MiB`,
    alone: true,
    async run(t) {
      const size = mb * 1000 * 1000;
      const program = `${PY_LLM_CLIENT}\nopen('status.txt', 'w').write(' '.join(str(raw('POST', '/v1/chat/completions', chat_body(${size}))) for _ in range(2)))`;
      const model = await t.scripted(agentRuns(python(program)));
      const server = await t.server({ env: limitMb ? { OPENCODE_ENV_MAX_REQUEST_MB: String(limitMb) } : {} });
      const r = await server.callOk('run_rollout', {
        instruction: 'send big',
        verify: ['true'],
        base_url: model.url,
        model: 'scripted-model',
      });
      model.requests.length = 0; // the bodies are large: keep them no longer than needed
      const peak = server.peakRssMiB();
      t.expect(peak < maxRssMiB, `server peak RSS ${peak.toFixed(0)} MiB`);
      const status = String(r.files?.['status.txt'] ?? '').trim();
      t.expect(/^\d+ \d+$/.test(status), `the requests were not sent (agent wrote "${status}", error ${r.error})`);
      t.expect(r.trace_uri, `no trace stored: ${r.error}`);
      let documents = 0;
      let largest = 0;
      try {
        const listed = await server.listResources();
        t.expect(listed.length > 0, 'no trace listed');
        for (const resource of listed) {
          const tree = await readTraceTree(server, resource.uri);
          documents += tree.documents;
          largest = Math.max(largest, tree.largestBytes);
          t.expect(tree.unreadable.length === 0, `unreadable: ${tree.unreadable.join('; ').slice(0, 300)}`);
        }
      } catch (error) {
        t.expect(false, `reading the trace resources failed: ${(error as Error).message}`);
      }
      t.expect(!server.transport.overflow, `a message over the SDK client's 10 MiB limit: ${server.transport.overflow}`);
      return `statuses ${status}; peak RSS ${peak.toFixed(0)} MiB; ${documents} trace documents read, largest ${(largest / MiB).toFixed(1)} MiB`;
    },
  };
}

/** Mounts a 1 MiB tmpfs, fills all but `freeBytes` of it, and unmounts it after the case. */
function mountFullTmpfs(t: CaseContext, dir: string, freeBytes: number): void {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', dir]);
  t.defer(() => void execFileSync('umount', ['-l', dir]));
  try {
    writeFileSync(path.join(dir, 'filler'), Buffer.alloc(MiB - freeBytes));
  } catch {
    // full already: fine
  }
}

/** Files a failed trace write must not leave behind: temporaries, unparsable JSON, torn JSONL lines. */
function corruptFiles(dir: string): string[] {
  const bad: string[] = [];
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || entry.name === 'filler') continue;
    const file = path.join(entry.parentPath, entry.name);
    const text = readFileSync(file, 'utf8');
    const parses = (line: string) => {
      try {
        JSON.parse(line);
        return true;
      } catch {
        return false;
      }
    };
    if (/\.tmp$|\.partial$/.test(entry.name)) bad.push(`${entry.name} (temporary)`);
    else if (entry.name.endsWith('.json') && !parses(text)) bad.push(`${entry.name} (not JSON)`);
    else if (entry.name.endsWith('.jsonl') && !text.split('\n').every((line) => line === '' || parses(line)))
      bad.push(`${entry.name} (torn line)`);
  }
  return bad;
}

export const traceCases: Case[] = [
  bigRequestsCase('4a', null, 100, 512),
  bigRequestsCase('4b', 128, 100, 1024),
  {
    id: '5a',
    title: 'trace loss: client disconnects',
    sent: 'two rollouts waiting on the model, then the client closes stdin; restart on the same data dir',
    async run(t) {
      const server = await t.server();
      await startStalledRollouts(t, server, 'disconnect', 2);
      const before = performance.now();
      t.ended(server);
      await server.disconnect();
      const exited = await server.waitExit(25_000);
      const exitS = (performance.now() - before) / 1000;
      t.expect(exited, 'the server did not exit within 25 s of the disconnect');
      const ids = ['disconnect-1', 'disconnect-2'];
      const restarted = await t.server({ workspace: server.workspace });
      const traces = await awaitTraces(restarted, (found) => ids.every((id) => tracesOf(found, id).length > 0), 5000);
      const kept = ids.flatMap((id) => tracesOf(traces, id));
      t.expect(kept.length === 2, `${kept.length} of 2 traces stored`);
      t.expect(
        kept.every((trace) => trace.errorKind === 'cancelled'),
        `error kinds ${kept.map((k) => k.errorKind).join(', ')}`,
      );
      return `exit after ${exitS.toFixed(1)} s; ${kept.length}/2 traces, error_kind ${kept.map((k) => k.errorKind).join(', ') || '-'}`;
    },
  },
  {
    id: '5b',
    title: 'trace loss: SIGTERM mid-rollout',
    sent: 'one rollout waiting on the model, then SIGTERM to the server; restart on the same data dir',
    async run(t) {
      const server = await t.server();
      await startStalledRollouts(t, server, 'sigterm', 1);
      const before = performance.now();
      t.ended(server);
      await server.kill('SIGTERM');
      const exited = await server.waitExit(25_000);
      const exitS = (performance.now() - before) / 1000;
      t.expect(exited, 'the server did not exit within 25 s of SIGTERM');
      const restarted = await t.server({ workspace: server.workspace });
      const kept = tracesOf(await awaitTraces(restarted, (found) => tracesOf(found, 'sigterm-1').length > 0, 5000), 'sigterm-1');
      t.expect(kept.length === 1, `${kept.length} of 1 trace stored`);
      t.expect(kept[0]?.errorKind === 'cancelled', `error kind ${kept[0]?.errorKind}`);
      return `exit after ${exitS.toFixed(1)} s; ${kept.length}/1 trace, error_kind ${kept[0]?.errorKind ?? '-'}`;
    },
  },
  {
    id: '5c',
    title: 'trace loss: SIGKILL mid-rollout',
    sent: 'one rollout past its first model turn, then SIGKILL to the server; restart on the same data dir, list traces',
    async run(t) {
      const llm = await t.scripted({
        turns: [
          { tool_calls: [{ name: 'bash', arguments: { command: 'echo step one', description: 'step' } }] },
          { text: 'thinking very slowly', delay_ms: 120_000 },
        ],
      });
      const server = await t.server();
      server
        .call('run_rollout', { instruction: 'work', verify: ['true'], task_id: 'sigkill-1', base_url: llm.url, model: 'scripted-model' })
        .catch(() => undefined);
      await waitFor(() => agentCalls(llm) >= 2, 90_000, 'the second agent turn');
      t.ended(server);
      await server.kill('SIGKILL');
      await server.exited;
      const restarted = await t.server({ workspace: server.workspace });
      const traces = await awaitTraces(restarted, (found) => tracesOf(found, 'sigkill-1').length > 0, 5000);
      const kept = tracesOf(traces, 'sigkill-1');
      const listedAsInterrupted = kept.filter(
        (k) => k.errorKind === 'interrupted' || /interrupted/i.test(`${k.resource.title} ${k.resource.description}`),
      );
      t.expect(kept.length >= 1, `no trace of the killed rollout among ${traces.length} listed`);
      t.expect(listedAsInterrupted.length >= 1, 'the trace is not marked interrupted');
      const turns = kept[0]?.json?.turns;
      return `${kept.length} trace(s) listed${listedAsInterrupted.length ? ', interrupted' : ''}${Array.isArray(turns) ? `, ${turns.length} turns kept` : ''}`;
    },
  },
  {
    id: '10',
    title: 'junk and traversal in trace URIs',
    sent: 'resources/read of traces/../../etc/passwd, ..%2f, %2e%2e, NUL, 10k chars, file:///etc/passwd, a file beside the store',
    async run(t) {
      const workspace = t.workspace();
      // Something to find if a traversal worked: a JSON file next to the trace store.
      mkdirSync(path.join(workspace.dataDir, 'traces'), { recursive: true });
      writeFileSync(path.join(workspace.dataDir, 'outside.json'), '{"marker": "outside-the-trace-store"}');
      const server = await t.server({ workspace });
      const uris = [
        'opencode-env://traces/../../etc/passwd',
        'opencode-env://traces/..%2f..%2f..%2fetc%2fpasswd',
        'opencode-env://traces/%2e%2e%2f%2e%2e%2fetc%2fpasswd',
        'opencode-env://traces/..%2foutside',
        'opencode-env://traces/%2E%2E%2Foutside',
        'opencode-env://traces/rollout-x%00.json',
        'opencode-env://traces/rollout-\u0000x',
        `opencode-env://traces/${'a'.repeat(10_000)}`,
        'opencode-env://traces/index',
        'opencode-env://traces/',
        'file:///etc/passwd',
      ];
      const codes: string[] = [];
      for (const uri of uris) {
        try {
          const read = await server.readResource(uri, 10_000);
          const text = JSON.stringify(read);
          t.expect(false, `${uri.slice(0, 60)} was answered (${text.length} chars)`);
          t.expect(!/root:|outside-the-trace-store/.test(text), `${uri.slice(0, 60)} read a file outside the store`);
          codes.push('answered');
        } catch (error) {
          const code = (error as { code?: unknown }).code;
          t.expect(typeof code === 'number', `${uri.slice(0, 60)}: ${(error as Error).message.slice(0, 100)}`);
          codes.push(String(code));
        }
      }
      const counts = [...new Set(codes)].map((c) => `${c} ×${codes.filter((x) => x === c).length}`);
      return `errors: ${counts.join(', ')}`;
    },
  },
  {
    id: '15',
    title: 'disk full in the data dir',
    sent: 'OPENCODE_ENV_DATA_DIR on a 1 MiB tmpfs with 8 KiB free; a FizzBuzz rollout',
    needsRoot: true,
    async run(t) {
      const workspace = t.workspace();
      const dataDir = path.join(workspace.dataDir, 'full');
      mountFullTmpfs(t, dataDir, 8 * 1024);
      const llm = await t.scripted(exampleScript('script.json'));
      const server = await t.server({ workspace, env: { OPENCODE_ENV_DATA_DIR: dataDir } });
      const r = await server.callOk('run_rollout', { ...exampleTask(), base_url: llm.url, model: 'scripted-model' });
      t.expect(r.trace_uri === null, `trace_uri ${r.trace_uri}`);
      t.expect(/trace/i.test(String(r.error)), `error does not say the trace could not be stored: ${r.error}`);
      const corrupt = corruptFiles(dataDir);
      t.expect(corrupt.length === 0, `left in the data dir: ${corrupt.join(', ')}`);
      return `reward ${r.reward}, trace_uri ${r.trace_uri}, error "${String(r.error).slice(0, 90)}"; ${corrupt.length ? corrupt.join(', ') : 'no corrupt file'}`;
    },
  },
  {
    id: '16',
    title: 'calls beyond MAX_CONCURRENT_ENVS',
    sent: 'MAX_CONCURRENT_ENVS=1; three FizzBuzz rollouts at once',
    async run(t) {
      const llm = await t.scripted(exampleScript('script.json'));
      const server = await t.server({ env: { MAX_CONCURRENT_ENVS: '1' } });
      const results = await Promise.all(
        [1, 2, 3].map((i) =>
          server.callOk('run_rollout', { ...exampleTask(), task_id: `queued-${i}`, base_url: llm.url, model: 'scripted-model' }),
        ),
      );
      const rewards = results.map((r) => r.reward);
      const queued = results.map((r) => Number(r.timings?.queue ?? 0)).sort((a, b) => a - b);
      t.expect(
        rewards.every((reward) => reward === 1),
        `rewards ${rewards.join(', ')}`,
      );
      t.expect(queued[1]! > 0.5 && queued[2]! > queued[1]!, `queue times ${queued.join(', ')} s: the extras did not wait their turn`);
      return `rewards ${rewards.join(', ')}; queued ${queued.map((q) => q.toFixed(1)).join(', ')} s`;
    },
  },
];
