// A warm opencode (the pool's entry: resources/sandbox/opencode-serve-driver.mjs in a real local sandbox, with the real
// opencode and the recording proxy), started before the model is known and bound to it with the prompt, must give the
// model the same requests as `opencode run` for that model (up to ids and times), print the same events, and leave the
// same work behind; for model ids that make opencode pick other system prompts and sampling (claude, gemini, others).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { planOpencodeRun } from '../src/core/rollout/opencode.js';
import { WarmPool } from '../src/core/rollout/warm-pool.js';
import { startRecordingProxy } from '../src/core/proxy/recording-proxy.js';
import { createLogger } from '../src/log.js';
import type { SandboxProvider } from '../src/sandbox/types.js';
import { localProvider } from './helpers/local-provider.js';
import { exampleScript, startScripted, type ScriptedLlm } from './helpers/scripted.js';
import { makeSystemTempDir, removeDir, waitFor } from './helpers/server.js';

const INSTRUCTION = 'Write fizzbuzz.py that prints FizzBuzz from 1 to 100, then run it.';
const AGENT_TIMEOUT_MS = 120_000;

interface Run {
  bodies: unknown[];
  eventTypes: string[];
  files: Record<string, string>;
  exitCode: number;
  /** Warm only: from the prompt's arrival to the first request reaching the model. */
  promptToFirstRequestMs?: number;
}

/** What differs between any two runs of opencode: its ids, and the sandbox's workdir (named in the system prompt). */
function normalized(body: unknown, workdir: string): unknown {
  return JSON.parse(
    JSON.stringify(body)
      .replaceAll(workdir, '<workdir>')
      .replace(/\b(ses|msg|prt|call|toolu)_[A-Za-z0-9]+/g, '$1_<id>'),
  );
}

describe('opencode serve, warmed ahead without a model, bound to one with the prompt', () => {
  let rootDir: string;
  let provider: SandboxProvider;
  let llm: ScriptedLlm;
  let pool: WarmPool;

  before(async () => {
    rootDir = makeSystemTempDir('warm-driver');
    provider = localProvider(rootDir, { OPENCODE_ENV_SANDBOX: 'local' });
    llm = await startScripted(exampleScript('script.json'));
    pool = new WarmPool({
      provider,
      size: 1,
      logger: createLogger('silent'),
      readyTimeoutMs: 90_000,
      idleMs: 600_000,
      healthIntervalMs: 60_000,
      healthTimeoutMs: 10_000,
      maxRssMiB: 100_000,
    });
  });
  after(async () => {
    await pool?.close();
    await provider?.killAll();
    await llm?.close();
    removeDir(rootDir);
  });

  const settings = (model: string) => ({ model, maxTokensCap: 4096, disableThinking: false, autoCompact: false });

  /** A ready warm agent from the pool: made before any model was named (the pool's first take misses). */
  async function takeWarm(model: string) {
    let taken = pool.take(settings(model), 0);
    if (!taken) await waitFor(() => (taken = pool.take(settings(model), 0)) !== null, 120_000, 'a warm opencode');
    return taken!;
  }

  async function runAgent(model: string, warm: boolean): Promise<Run> {
    const warmAgent = warm ? await takeWarm(model) : null;
    const sandbox = warmAgent?.sandbox ?? (await provider.create({ label: 'cold' }));
    const proxy = await startRecordingProxy({
      upstreamBaseUrl: llm.url,
      record: true,
      topLogprobs: 0,
      requestTokenIds: true,
      disableThinking: false,
      maxTokensCap: 4096,
      maxConsecutiveFailures: 3,
    });
    try {
      const firstRequest = llm.requests.length;
      let stdout = '';
      let exitCode: number;
      let promptToFirstRequestMs: number | undefined;
      if (!warmAgent) {
        const channel = await sandbox.openLlmChannel((connection) => proxy.accept(connection));
        const plan = await planOpencodeRun(sandbox, { instruction: INSTRUCTION, ...settings(model), baseUrl: `${channel.url}/v1` });
        const done = await sandbox.run(await channel.command(plan.argv), {
          env: plan.env,
          stdin: plan.stdin,
          timeoutMs: AGENT_TIMEOUT_MS,
          maxOutputBytes: 1024 * 1024,
          onStdout: (chunk) => void (stdout += chunk.toString('utf8')),
        });
        exitCode = done.exitCode;
        await channel.close();
      } else {
        warmAgent.bindLlm((connection) => proxy.accept(connection));
        const prompted = performance.now();
        const watch = setInterval(() => {
          if (promptToFirstRequestMs === undefined && llm.requests.length > firstRequest)
            promptToFirstRequestMs = performance.now() - prompted;
        }, 2);
        const agent = await warmAgent.prompt(INSTRUCTION, settings(model), {
          onStdout: (chunk) => void (stdout += chunk.toString('utf8')),
          onStderr: () => undefined,
        });
        const timer = setTimeout(() => void agent.kill(), AGENT_TIMEOUT_MS);
        exitCode = (await agent.exited).exitCode;
        clearTimeout(timer);
        clearInterval(watch);
      }
      const events = stdout
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as { type: string });
      const files: Record<string, string> = {};
      for (const name of ['fizzbuzz.py']) files[name] = (await sandbox.readFile(`${sandbox.workdir}/${name}`)).toString('utf8');
      return {
        // opencode sends its title request beside the agent's first: which arrives first varies with the load.
        bodies: llm.requests
          .slice(firstRequest)
          .map((request) => normalized(request.body, sandbox.workdir))
          .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
        eventTypes: events.map((event) => event.type),
        files,
        exitCode,
        ...(promptToFirstRequestMs !== undefined ? { promptToFirstRequestMs } : {}),
      };
    } finally {
      await proxy.close();
      await sandbox.kill();
    }
  }

  // scripted-model gets opencode's default prompt; claude and gemini ids get prompts (and gemini a top_p) of their own.
  for (const model of ['scripted-model', 'claude-sonnet-4', 'gemini-2.5-pro']) {
    it(`sends the model the same requests as opencode run, prints the same events and leaves the same work: ${model}`, async () => {
      const before = llm.requests.length;
      const warm = await runAgent(model, true);
      const cold = await runAgent(model, false);
      assert.equal(cold.exitCode, 0, 'cold run failed');
      assert.equal(warm.exitCode, 0, 'warm run failed');
      assert.ok(cold.bodies.length >= 2, `the cold run called the model (${cold.bodies.length} requests)`);
      assert.equal(llm.requests.length - before, warm.bodies.length + cold.bodies.length, 'nothing reached the model but the two runs');
      assert.ok(JSON.stringify(cold.bodies).includes(`llm/${model}`), 'the system prompt names the model');
      assert.deepEqual(warm.bodies, cold.bodies, 'the request bodies that reached the model, warm vs cold');
      assert.deepEqual(warm.eventTypes, cold.eventTypes, 'the events printed, warm vs cold');
      assert.deepEqual(warm.files, cold.files, 'the work left in the workdir');
      assert.ok(warm.promptToFirstRequestMs !== undefined, 'the warm run reached the model');
      process.stderr.write(`warm driver (${model}): first model request ${Math.round(warm.promptToFirstRequestMs)} ms after the prompt\n`);
    });
  }
});
