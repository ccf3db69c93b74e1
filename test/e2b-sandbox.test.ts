// The E2B backend against the offline stand-in (test/helpers/e2b-standin): the shared sandbox contract, and what
// only this backend promises (the SDK's command timeout is off, deadlines kill in the sandbox, creations are paced).
import assert from 'node:assert/strict';
import os from 'node:os';
import { after, before, describe, it } from 'node:test';
import { CreateLimiter } from '../src/sandbox/e2b/create-limiter.js';
import { E2bSandboxProvider } from '../src/sandbox/e2b/provider.js';
import { bash, type SandboxProvider } from '../src/sandbox/types.js';
import { sandboxContract } from './helpers/sandbox-contract.js';
import { waitFor } from './helpers/server.js';
import { standInProvider, startE2bStandIn, type E2bStandIn } from './helpers/e2b-standin/index.js';

function e2bProvider(standIn: E2bStandIn, createPerSecond = 50, limiter?: CreateLimiter): E2bSandboxProvider {
  return standInProvider(standIn, { createPerSecond, ...(limiter ? { limiter } : {}) });
}

let contractStandIn: E2bStandIn | null = null;
sandboxContract({
  name: 'e2b (stand-in)',
  createProvider: async () => e2bProvider((contractStandIn = await startE2bStandIn())),
  cleanup: async () => contractStandIn?.close(),
});

describe('e2b sandbox on the stand-in', () => {
  let standIn: E2bStandIn;
  let provider: SandboxProvider;

  before(async () => {
    standIn = await startE2bStandIn();
    provider = e2bProvider(standIn);
  });
  after(async () => {
    await provider.killAll();
    await standIn.close();
  });

  it('creates with the template, lifetime, env and tagged metadata', async () => {
    const sandbox = await provider.create({
      template: 'custom-template',
      lifetimeMs: 120_000,
      metadata: { rollout: 'r1' },
      env: { A: 'b' },
    });
    const info = standIn.sandboxes().find((s) => s.sandboxId === sandbox.id);
    assert.ok(info, 'the stand-in knows the sandbox');
    assert.equal(info.templateId, 'custom-template');
    assert.equal(info.timeoutS, 120);
    assert.deepEqual(info.envs, { A: 'b' });
    assert.deepEqual(info.metadata, {
      rollout: 'r1',
      app: 'opencode-env',
      serverInstance: 'test-instance',
      serverHost: os.hostname(),
      serverPid: String(process.pid),
    });
    assert.equal(sandbox.backend, 'e2b');
    await sandbox.kill();
    assert.equal(standIn.sandboxes().find((s) => s.sandboxId === sandbox.id)?.state, 'killed', 'kill() kills it at E2B');
  });

  it('never hands the SDK a command deadline: its 60 s default would cut long commands', async () => {
    const sandbox = await provider.create({ label: 'no-sdk-timeout' });
    const before = standIn.requests.length;
    const result = await sandbox.run(bash('echo ok'), { timeoutMs: 5000 });
    assert.equal(result.stdout, 'ok\n');
    const starts = standIn.requests.slice(before).filter((r) => r.path === '/process.Process/Start');
    assert.ok(starts.length > 0, 'the command went through envd Start');
    await sandbox.pythonExecutable(); // one of our own short commands, which does have a deadline
    const lookup = standIn.requests.filter((r) => r.path === '/process.Process/Start').at(-1);
    assert.equal(lookup?.headers['connect-timeout-ms'], '30000', 'a deadline, when there is one, shows in this header');
    for (const start of starts) {
      assert.equal(
        start.headers['connect-timeout-ms'],
        undefined,
        `no Connect deadline on Start (got ${start.headers['connect-timeout-ms']})`,
      );
    }
  });

  it('kills a command in the sandbox when its deadline passes, leaving no process running', async () => {
    const sandbox = await provider.create({ label: 'deadline' });
    const started = performance.now();
    const result = await sandbox.run(bash('sleep 300 & sleep 300'), { timeoutMs: 500 });
    assert.equal(result.timedOut, true);
    assert.ok(result.exitCode > 128, `killed by a signal (exit ${result.exitCode})`);
    assert.ok(performance.now() - started < 15_000, 'run() returned soon after the deadline');
    const runningPids = () => standIn.sandboxes().find((s) => s.sandboxId === sandbox.id)?.runningPids;
    await waitFor(() => runningPids()?.length === 0, 5000, `envd to have no process left (has ${JSON.stringify(runningPids())})`);
  });

  it('paces creations through its limiter', async () => {
    const paced = e2bProvider(standIn, 4);
    try {
      const started = performance.now();
      await Promise.all([0, 1, 2].map(() => paced.create({ label: 'paced' })));
      const creates = standIn.requests.filter((r) => r.server === 'api' && r.method === 'POST' && r.path === '/v2/sandboxes').slice(-3);
      assert.equal(creates.length, 3);
      assert.ok(performance.now() - started >= 490, 'three creations at 4/s take at least two intervals (500 ms)');
    } finally {
      await paced.killAll();
    }
  });
});
