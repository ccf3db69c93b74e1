// OPENCODE_ENV_WARM_POOL through the real MCP server: the first rollout starts cold and points the pool at its
// opencode settings; the next one takes a warm opencode and gets the same outcome, and so does one for another model;
// nothing is left behind at exit.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import path from 'node:path';
import { RolloutRunner } from '../src/core/rollout/run.js';
import { rolloutRequestSchema } from '../src/core/rollout/schema.js';
import { WarmPool, type WarmPoolOptions } from '../src/core/rollout/warm-pool.js';
import { TraceStore } from '../src/core/traces.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { Semaphore } from '../src/util/semaphore.js';
import type { SandboxProvider } from '../src/sandbox/types.js';
import { findProcessesByEnvMarker } from '../src/util/process-tree.js';
import { serverEnv, startE2bStandIn, type E2bStandIn } from './helpers/e2b-standin/index.js';
import { localProvider } from './helpers/local-provider.js';
import { exampleScript, exampleTask, startScripted, type ScriptedLlm } from './helpers/scripted.js';
import { makeSystemTempDir, removeDir, startServer, waitFor, type RunningServer } from './helpers/server.js';

describe('the warm pool (OPENCODE_ENV_WARM_POOL=1)', () => {
  let server: RunningServer;
  let llm: ScriptedLlm;
  before(async () => {
    [server, llm] = await Promise.all([startServer({ env: { OPENCODE_ENV_WARM_POOL: '1' } }), startScripted(exampleScript('script.json'))]);
  });
  after(async () => {
    await Promise.all([server?.close(), llm?.close()]);
  });

  const rollout = async (taskId: string, extra: Record<string, unknown> = {}) => {
    try {
      return await server.callOk('run_rollout', {
        ...exampleTask(),
        task_id: taskId,
        base_url: llm.url,
        model: 'scripted-model',
        ...extra,
      });
    } catch (error) {
      throw new Error(`${(error as Error).message}; server stderr: ${server.stderr().slice(-3000)}`, { cause: error });
    }
  };
  /** Rollouts until one starts warm (the pool's sandbox exists before its opencode is ready): that one. */
  const warmRollout = async (taskId: string, extra: Record<string, unknown> = {}) => {
    let result: Record<string, any> = {};
    for (let attempt = 0; attempt < 60; attempt++) {
      result = await rollout(`${taskId}-${attempt}`, extra);
      if (result.warm_start) break;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    return result;
  };
  // The server removes its sandbox root at exit.
  const sandboxDirs = () =>
    existsSync(server.sandboxRoot) ? readdirSync(server.sandboxRoot).filter((name) => name.startsWith('opencode-env-')) : [];

  it('starts the first rollout cold, the next warm, with the same outcome, and kills the idle one at exit', async () => {
    const cold = await rollout('cold');
    assert.equal(cold.warm_start, false, 'nothing was warm before the first rollout');
    assert.equal(cold.reward, 1, JSON.stringify(cold.error));
    // The pool now makes one sandbox with opencode started for the same settings.
    await waitFor(() => sandboxDirs().length === 1, 90_000, 'a warm sandbox to be made');
    const warm = await warmRollout('warm');
    assert.equal(warm.warm_start, true, 'a later rollout took the warm opencode');
    assert.equal(warm.reward, 1, JSON.stringify(warm.error));
    assert.deepEqual(
      warm.agent_events.map((e: { type: string }) => e.type),
      cold.agent_events.map((e: { type: string }) => e.type),
      'the same events, warm or cold',
    );
    assert.deepEqual(Object.keys(warm.files).sort(), Object.keys(cold.files).sort());
    assert.equal(warm.files['fizzbuzz.py'], cold.files['fizzbuzz.py']);
    assert.equal(warm.proxy_turns.length, cold.proxy_turns.length, 'as many model calls');
    assert.ok(
      warm.timings.sandbox < cold.timings.sandbox,
      `the warm sandbox came ready (${warm.timings.sandbox} s vs ${cold.timings.sandbox} s)`,
    );
    process.stderr.write(`warm pool: cold ${JSON.stringify(cold.timings)}\nwarm pool: warm ${JSON.stringify(warm.timings)}\n`);
    // The pool refills after a take, with an opencode bound to no model: another model and cap take it too.
    await waitFor(() => sandboxDirs().length === 1, 90_000, 'the pool to refill');
    const other = await warmRollout('other-model', { model: 'claude-sonnet-4', max_tokens_cap: 2048 });
    assert.equal(other.warm_start, true, 'a rollout for another model and cap took the refilled opencode');
    assert.equal(other.reward, 1, JSON.stringify(other.error));
    // At exit the refilled one goes too.
    await waitFor(() => sandboxDirs().length === 1, 90_000, 'the pool to refill');
    await server.close();
    assert.deepEqual(sandboxDirs(), [], 'no sandbox left after the server exited');
  });
});

describe('the warm pool on E2B (stand-in)', () => {
  let standIn: E2bStandIn;
  let server: RunningServer;
  let llm: ScriptedLlm;
  before(async () => {
    standIn = await startE2bStandIn();
    [server, llm] = await Promise.all([
      startServer({ env: serverEnv(standIn, { OPENCODE_ENV_WARM_POOL: '1' }) }),
      startScripted(exampleScript('script.json')),
    ]);
  });
  after(async () => {
    await Promise.all([server?.close(), llm?.close()]);
    await standIn?.close();
  });

  it('takes a warm opencode through the relay channel, and kills every sandbox by exit', async () => {
    const args = { ...exampleTask(), base_url: llm.url, model: 'scripted-model' };
    const cold = await server.callOk('run_rollout', { ...args, task_id: 'cold' });
    assert.equal(cold.warm_start, false);
    assert.equal(cold.reward, 1, JSON.stringify(cold.error));
    let warm: Record<string, any> = {};
    for (let attempt = 0; attempt < 60 && !warm.warm_start; attempt++) {
      await waitFor(() => standIn.sandboxes().some((s) => s.state === 'running' && s.metadata.label === 'warm'), 90_000, 'a warm sandbox');
      warm = await server.callOk('run_rollout', { ...args, task_id: `warm-${attempt}` });
    }
    assert.equal(warm.warm_start, true, 'a later rollout took the warm opencode');
    assert.equal(warm.reward, 1, JSON.stringify(warm.error));
    assert.deepEqual(
      warm.agent_events.map((e: { type: string }) => e.type),
      cold.agent_events.map((e: { type: string }) => e.type),
    );
    await server.close();
    assert.deepEqual(
      standIn.sandboxes().filter((s) => s.state === 'running'),
      [],
      'every sandbox, the refilled warm one too, killed by exit',
    );
  });
});

describe('the warm pool watchdog', () => {
  let rootDir: string;
  let provider: SandboxProvider;
  before(() => {
    rootDir = makeSystemTempDir('warm-watchdog');
    provider = localProvider(rootDir, { OPENCODE_ENV_SANDBOX: 'local' });
  });
  after(async () => {
    await provider?.killAll();
    removeDir(rootDir);
  });

  const settings = { model: 'scripted-model', maxTokensCap: 4096, disableThinking: false, autoCompact: false };
  const pool = (options: Partial<WarmPoolOptions>) =>
    new WarmPool({
      provider,
      size: 1,
      logger: createLogger('silent'),
      readyTimeoutMs: 90_000,
      idleMs: 600_000,
      healthIntervalMs: 300,
      healthTimeoutMs: 3_000,
      maxRssMiB: 100_000,
      ...options,
    });

  /** Signals the one opencode serve of this suite's sandboxes (other tests may run their own at the same time). */
  async function signalServe(signal: 'SIGSTOP' | 'SIGKILL' = 'SIGSTOP'): Promise<void> {
    const { serve, sandboxes } = await ourServes();
    assert.equal(serve.length, 1, `one opencode serve runs in the pool's sandbox (${sandboxes.join(', ')})`);
    process.kill(serve[0]!, signal);
  }

  /** The opencode serve processes in this suite's sandboxes, and those sandboxes. */
  async function ourServes(): Promise<{ serve: number[]; sandboxes: string[] }> {
    const sandboxes = readdirSync(rootDir).map((name) => name.replace(/^opencode-env-/, ''));
    const ours = new Set((await Promise.all(sandboxes.map((id) => findProcessesByEnvMarker('OPENCODE_ENV_SANDBOX_ID', id)))).flat());
    return { serve: processesMatching(/opencode(\.exe)? serve/).filter((pid) => ours.has(pid)), sandboxes };
  }

  it('replaces a waiting opencode that grew past the memory bound', async () => {
    const warm = pool({ maxRssMiB: 1 });
    try {
      assert.equal(warm.take(settings, 0), null, 'nothing is warm at first');
      await waitFor(() => (warm.stats.retired.memory ?? 0) >= 1, 120_000, 'a warm opencode replaced for its memory');
      assert.ok(warm.stats.made >= 1);
      // The pool is making the replacement now: closing it must stop and kill that one too.
      await warm.close();
      const left = await ourServes();
      assert.deepEqual(left.serve, [], `no opencode serve left once the pool closed (${left.sandboxes.join(', ')})`);
    } finally {
      await warm.close();
      await provider.killAll();
    }
  });

  it('replaces a waiting opencode that stopped answering (serve frozen with SIGSTOP)', async () => {
    const warm = pool({});
    try {
      warm.take(settings, 0);
      await waitFor(() => warm.stats.made >= 1, 120_000, 'a warm opencode');
      await signalServe();
      await waitFor(() => (warm.stats.retired['no answer'] ?? 0) >= 1, 30_000, 'the frozen one replaced');
      await waitFor(() => warm.stats.made >= 2, 120_000, 'a fresh one made');
    } finally {
      await warm.close();
      // What the pool was still making dies with the provider's sandboxes, as at a server's shutdown: the next test
      // must see only its own.
      await provider.killAll();
    }
  });

  /** A rollout runner on this suite's provider, taking from `warm`, with a short first-request deadline. */
  function runnerWith(warm: WarmPool, dataDir: string): RolloutRunner {
    const config = loadConfig({ OPENCODE_ENV_SANDBOX_DIR: rootDir, OPENCODE_ENV_DATA_DIR: dataDir });
    return new RolloutRunner({
      provider,
      traces: new TraceStore(path.join(dataDir, 'traces')),
      concurrency: new Semaphore(1),
      endpoints: config.rollouts.endpoints,
      maxConsecutiveUpstreamFailures: 3,
      maxRequestBytes: config.rollouts.maxRequestBytes,
      logger: createLogger('silent'),
      warmPool: warm,
      warmFirstRequestMs: 3_000,
    });
  }

  for (const [what, when, why] of [
    ['makes no LLM request after its prompt (serve frozen)', 'before', 'made no LLM request 3 s after its prompt'],
    ['exited after it was taken, before its prompt (serve killed during setup)', 'during setup', 'exited before its prompt'],
  ] as const) {
    it(`runs opencode cold in the same sandbox when a taken warm one ${what}`, async () => {
      const llm = await startScripted(exampleScript('script.json'));
      const warm = pool({ healthIntervalMs: 600_000 });
      const dataDir = makeSystemTempDir('warm-fallback-data');
      try {
        const runner = runnerWith(warm, dataDir);
        warm.take(settings, 0);
        await waitFor(() => warm.stats.made >= 1, 120_000, 'a warm opencode');
        const task = exampleTask();
        const spec = rolloutRequestSchema.parse({
          ...task,
          task_id: 'warm-fallback',
          base_url: llm.url,
          model: settings.model,
          // Time for the test to kill serve once the rollout has taken the entry.
          ...(when === 'during setup' ? { setup: [...(task.setup ?? []), 'sleep 3'] } : {}),
        });
        // Hung as opencode can hang at start-up: it takes the prompt and never calls the model.
        if (when === 'before') await signalServe('SIGSTOP');
        const running = runner.run(spec);
        if (when === 'during setup') {
          await waitFor(() => warm.stats.taken === 1, 30_000, 'the rollout to take the warm entry');
          await signalServe('SIGKILL');
        }
        const result = await running;
        assert.equal(result.reward, 1, `the cold run did the work: ${JSON.stringify(result.error)}`);
        assert.equal(result.warm_start, false, 'the agent that ran was a cold one');
        assert.equal(warm.stats.taken, 1, 'the rollout took the warm entry first');
        assert.ok(result.agent_log_tail.includes(`the warm opencode ${why}`), result.agent_log_tail);
        assert.ok(result.proxy_turns.length >= 2, "the cold run called the model through the rollout's proxy");
      } finally {
        await warm.close();
        await provider.killAll();
        await llm.close();
        removeDir(dataDir);
      }
    });
  }
});

/** Host pids whose command line matches. */
function processesMatching(pattern: RegExp): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        return pattern.test(readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' '));
      } catch {
        return false;
      }
    })
    .map(Number);
}
