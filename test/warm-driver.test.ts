// The warm pool's in-sandbox end (resources/sandbox/opencode-serve-driver.mjs), in a real local sandbox with the real
// opencode and the recording proxy: warmed before the prompt is known, it must give the model the same requests as
// `opencode run` (up to ids and times), print the same events, and leave the same work behind.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { planOpencodeRun } from '../src/core/rollout/opencode.js';
import { startRecordingProxy } from '../src/core/proxy/recording-proxy.js';
import type { SandboxProvider } from '../src/sandbox/types.js';
import { localProvider } from './helpers/local-provider.js';
import { exampleScript, startScripted, type ScriptedLlm } from './helpers/scripted.js';
import { makeSystemTempDir, removeDir } from './helpers/server.js';

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

/** What differs between any two runs of opencode: its ids. */
function normalized(body: unknown): unknown {
  return JSON.parse(JSON.stringify(body).replace(/\b(ses|msg|prt|call|toolu)_[A-Za-z0-9]+/g, '$1_<id>'));
}

describe('opencode serve, warmed ahead, driven by the in-sandbox driver', () => {
  let rootDir: string;
  let provider: SandboxProvider;
  let llm: ScriptedLlm;

  before(async () => {
    rootDir = makeSystemTempDir('warm-driver');
    provider = localProvider(rootDir, { OPENCODE_ENV_SANDBOX: 'local' });
    llm = await startScripted(exampleScript('script.json'));
  });
  after(async () => {
    await provider?.killAll();
    await llm?.close();
    removeDir(rootDir);
  });

  async function runAgent(warm: boolean): Promise<Run> {
    const sandbox = await provider.create({ label: warm ? 'warm' : 'cold' });
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
      const channel = await sandbox.openLlmChannel((connection) => proxy.accept(connection));
      const plan = await planOpencodeRun(sandbox, {
        instruction: INSTRUCTION,
        model: 'scripted-model',
        maxTokensCap: 4096,
        baseUrl: `${channel.url}/v1`,
      });
      const firstRequest = llm.requests.length;
      let stdout = '';
      let exitCode: number;
      let promptToFirstRequestMs: number | undefined;
      if (!warm) {
        const done = await sandbox.run(await channel.command(plan.argv), {
          env: plan.env,
          stdin: plan.stdin,
          timeoutMs: AGENT_TIMEOUT_MS,
          maxOutputBytes: 1024 * 1024,
          onStdout: (chunk) => void (stdout += chunk.toString('utf8')),
        });
        exitCode = done.exitCode;
      } else {
        const [node, driver] = await Promise.all([sandbox.binaryPath('node'), sandbox.resourcePath('sandbox/opencode-serve-driver.mjs')]);
        let onReady: () => void = () => undefined;
        const ready = new Promise<void>((resolve) => (onReady = resolve));
        const agent = await sandbox.start(await channel.command([node, driver, plan.argv[0]!, sandbox.workdir]), {
          env: plan.env,
          onStdout: (chunk) => {
            stdout += chunk.toString('utf8');
            if (stdout.includes('"opencode-env.ready"')) onReady();
          },
        });
        const readyOrExit = await Promise.race([ready.then(() => 'ready'), agent.exited.then(() => 'exited')]);
        assert.equal(readyOrExit, 'ready', `the driver exited before it was ready: ${stdout}`);
        assert.equal(llm.requests.length, firstRequest, 'nothing reached the model before the prompt');
        const prompted = performance.now();
        const watch = setInterval(() => {
          if (promptToFirstRequestMs === undefined && llm.requests.length > firstRequest)
            promptToFirstRequestMs = performance.now() - prompted;
        }, 2);
        await agent.write(`${JSON.stringify({ prompt: INSTRUCTION, model: plan.argv.at(-1) })}\n`);
        await agent.endInput();
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
      await channel.close();
      return {
        bodies: llm.requests.slice(firstRequest).map((request) => normalized(request.body)),
        eventTypes: events.map((event) => event.type).filter((type) => !type.startsWith('opencode-env.')),
        files,
        exitCode,
        ...(promptToFirstRequestMs !== undefined ? { promptToFirstRequestMs } : {}),
      };
    } finally {
      await proxy.close();
      await sandbox.kill();
    }
  }

  it('sends the model the same requests as opencode run, prints the same events and leaves the same work', async () => {
    const cold = await runAgent(false);
    const warm = await runAgent(true);
    assert.equal(cold.exitCode, 0, 'cold run failed');
    assert.equal(warm.exitCode, 0, 'warm run failed');
    assert.ok(cold.bodies.length >= 2, `the cold run called the model (${cold.bodies.length} requests)`);
    assert.deepEqual(warm.bodies, cold.bodies, 'the request bodies that reached the model, warm vs cold');
    assert.deepEqual(warm.eventTypes, cold.eventTypes, 'the events printed, warm vs cold');
    assert.deepEqual(warm.files, cold.files, 'the work left in the workdir');
    assert.ok(warm.promptToFirstRequestMs !== undefined, 'the warm run reached the model');
    process.stderr.write(`warm driver: first model request ${Math.round(warm.promptToFirstRequestMs)} ms after the prompt\n`);
  });
});
