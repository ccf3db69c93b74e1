import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { exampleScript, exampleTask, startScripted, type ScriptedLlm } from './helpers/scripted.js';
import { startServer, type RunningServer } from './helpers/server.js';

describe('MAX_CONCURRENT_ENVS bounds concurrent rollouts', () => {
  let server: RunningServer;
  let llm: ScriptedLlm;
  before(async () => {
    [server, llm] = await Promise.all([startServer({ env: { MAX_CONCURRENT_ENVS: '1' } }), startScripted(exampleScript('script.json'))]);
  });
  after(async () => {
    await Promise.all([server.close(), llm.close()]);
  });

  it('makes an extra rollout wait for a free slot, then runs it', async () => {
    const progress: string[][] = [[], []];
    const calls = [0, 1].map((i) =>
      server.client.callTool(
        { name: 'run_rollout', arguments: { ...exampleTask(), task_id: `concurrent-${i}`, base_url: llm.url, model: 'scripted-model' } },
        undefined,
        { timeout: 300_000, onprogress: (p) => void progress[i]!.push(p.message ?? '') },
      ),
    );
    const results = (await Promise.all(calls)).map((r) => r.structuredContent as Record<string, any>);
    assert.deepEqual(results.map((r) => r.reward), [1, 1]);
    const waited = results.findIndex((r) => r.timings.queue > 1);
    assert.ok(waited >= 0, `one rollout queued: ${JSON.stringify(results.map((r) => r.timings.queue))}`);
    assert.ok(progress[waited]!.some((m) => /waiting for a free slot \(1 rollouts running, limit 1\)/.test(m)), progress[waited]!.join('\n'));
    const [a, b] = results;
    assert.ok(Math.abs(a!.timings.queue - b!.timings.queue) > 1, 'they did not run side by side');
  });
});
