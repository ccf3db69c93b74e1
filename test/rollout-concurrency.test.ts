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
    // Both calls' progress in the order it arrived: the proof is in the order of events, not in timings.
    const events: Array<{ call: number; message: string }> = [];
    const calls = [0, 1].map((call) =>
      server.client.callTool(
        { name: 'run_rollout', arguments: { ...exampleTask(), task_id: `concurrent-${call}`, base_url: llm.url, model: 'scripted-model' } },
        undefined,
        { timeout: 300_000, onprogress: (p) => void events.push({ call, message: p.message ?? '' }) },
      ),
    );
    const results = (await Promise.all(calls)).map((r) => r.structuredContent as Record<string, any>);
    assert.deepEqual(
      results.map((r) => r.reward),
      [1, 1],
    );
    const waiting = events.find((e) => /waiting for a free slot \(1 rollouts running, limit 1\)/.test(e.message));
    assert.ok(waiting, `one rollout was told to wait: ${JSON.stringify(events)}`);
    const other = 1 - waiting.call;
    const index = (call: number, message: string) => events.findIndex((e) => e.call === call && e.message === message);
    assert.ok(index(other, 'phase: collect') >= 0 && index(waiting.call, 'phase: sandbox') >= 0);
    assert.ok(
      index(waiting.call, 'phase: sandbox') > index(other, 'phase: collect'),
      'the waiting rollout got its sandbox only after the other one had finished its work',
    );
  });
});
