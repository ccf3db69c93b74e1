// E2B failures through the real SDK against the offline stand-in: each one becomes a SandboxError that says what
// to do; creation is retried (503, network) or left to the SDK's Retry-After (429); a dispatched command never is.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { SandboxError } from '../src/errors.js';
import { E2bSandboxProvider } from '../src/sandbox/e2b/provider.js';
import type { RetryPolicy } from '../src/sandbox/e2b/retry.js';
import { bash } from '../src/sandbox/types.js';
import { standInProvider, startE2bStandIn, type E2bStandIn, type RecordedRequest } from './helpers/e2b-standin/index.js';
import { waitFor } from './helpers/server.js';

function provider(
  standIn: E2bStandIn,
  overrides: { apiKey?: string; apiUrl?: string; retryPolicy?: RetryPolicy } = {},
): E2bSandboxProvider {
  return standInProvider(standIn, { serverInstanceId: 'errors-test', ...overrides });
}

const isCreate = (r: RecordedRequest) => r.server === 'api' && r.method === 'POST' && r.path === '/v2/sandboxes';

/** A 127.0.0.1 port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function rejection(promise: Promise<unknown>): Promise<SandboxError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof SandboxError, `a SandboxError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected a rejection');
}

describe('e2b errors and retries (stand-in)', () => {
  let standIn: E2bStandIn;
  let e2b: E2bSandboxProvider;

  before(async () => {
    standIn = await startE2bStandIn();
    e2b = provider(standIn);
  });
  after(async () => {
    await e2b.killAll();
    await standIn.close();
  });

  /** Counts the create requests the stand-in sees from now on. */
  function countCreates(): () => number {
    const start = standIn.requests.length;
    return () => standIn.requests.slice(start).filter(isCreate).length;
  }

  it('401 on create names E2B_API_KEY and is not retried', async () => {
    const createsSince = countCreates();
    const error = await rejection(provider(standIn, { apiKey: 'e2b_wrong' }).create({ label: 'bad-key' }));
    assert.match(error.message, /E2B_API_KEY/);
    assert.match(error.message, /401/);
    assert.equal(createsSince(), 1, 'one create request, no retry');
  });

  it('429 with Retry-After 1, then success: created after about a second', async () => {
    const createsSince = countCreates();
    standIn.failCreates({ status: 429, retryAfterS: 1 });
    const started = performance.now();
    const sandbox = await e2b.create({ label: 'retry-after' });
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 900 && elapsed < 5000, `waited the Retry-After (${Math.round(elapsed)} ms)`);
    assert.equal(createsSince(), 2);
    await sandbox.kill();
  });

  it('503 twice, then success: created by our backoff', async () => {
    const createsSince = countCreates();
    standIn.failCreates({ status: 503 }, { status: 503 });
    const sandbox = await e2b.create({ label: 'busy' });
    assert.equal(createsSince(), 3);
    assert.equal((await sandbox.run(bash('echo up'), { timeoutMs: 10_000 })).stdout, 'up\n');
    await sandbox.kill();
  });

  it('429 on every attempt: gives up after the cap with a message naming the rate limit', async () => {
    const createsSince = countCreates();
    standIn.failCreates(...Array.from({ length: 4 }, () => ({ status: 429, retryAfterS: 1 })));
    const started = performance.now();
    const error = await rejection(e2b.create({ label: 'rate-limited' }));
    const elapsed = performance.now() - started;
    assert.match(error.message, /rate limit/);
    assert.match(error.message, /OPENCODE_ENV_E2B_CREATE_PER_S/);
    assert.equal(createsSince(), 4, 'the SDK sent it 1 + 3 times and we did not multiply that');
    assert.ok(elapsed >= 2700 && elapsed < 10_000, `three Retry-After waits (${Math.round(elapsed)} ms)`);
  });

  it('a reached concurrency limit says so, and what to do', async () => {
    standIn.failCreates({ status: 429, message: 'You have reached the maximum number of concurrent E2B sandboxes (20)' });
    const error = await rejection(e2b.create({ label: 'quota' }));
    assert.match(error.message, /concurrent sandboxes/);
    assert.match(error.message, /MAX_CONCURRENT_ENVS/);
  });

  it('404 on create names the template', async () => {
    const createsSince = countCreates();
    standIn.failCreates({ status: 404, message: "template 'no-such-template' not found" });
    const error = await rejection(e2b.create({ label: 'no-template', template: 'no-such-template' }));
    assert.match(error.message, /no template "no-such-template"/);
    assert.match(error.message, /OPENCODE_ENV_E2B_TEMPLATE/);
    assert.equal(createsSince(), 1, 'not retried');
  });

  it('an unreachable API: retried, then a message about the network', async () => {
    const port = await closedPort();
    const unreachable = provider(standIn, {
      apiUrl: `http://127.0.0.1:${port}`,
      retryPolicy: { maxAttempts: 3, baseDelayMs: 50, maxDelayMs: 200 },
    });
    const error = await rejection(unreachable.create({ label: 'unreachable' }));
    assert.match(error.message, /could not reach E2B's API/);
    assert.match(error.message, /after 3 attempts/);
  });

  it('a sandbox killed from outside mid-command: run() rejects, saying the sandbox ended', async () => {
    const sandbox = await e2b.create({ label: 'killed-outside' });
    // The rejection is awaited below; handling it from the start keeps it from counting as unhandled meanwhile.
    const running = rejection(sandbox.run(bash('sleep 60'), { timeoutMs: 120_000 }));
    const info = () => standIn.sandboxes().find((s) => s.sandboxId === sandbox.id);
    await waitFor(() => (info()?.runningPids.length ?? 0) > 0, 10_000, 'the command to start');
    const killedAt = performance.now();
    await standIn.killSandbox(sandbox.id);
    const error = await running;
    assert.ok(performance.now() - killedAt < 10_000, 'rejected soon after the kill, not at the deadline');
    assert.match(error.message, new RegExp(`sandbox ${sandbox.id} ended`));
    assert.match(error.message, /lifetime/);
    // Later file transfers say the same, and are not retried.
    const before = standIn.requests.length;
    const readError = await rejection(sandbox.readFile('anything.txt'));
    assert.match(readError.message, /ended/);
    assert.equal(
      standIn.requests.slice(before).filter((r) => r.server === 'envd' && r.path.startsWith('/filesystem')).length,
      1,
      'one try',
    );
    await sandbox.kill();
  });

  it('a dropped Start stream: the command is not run again', async () => {
    const sandbox = await e2b.create({ label: 'dropped-stream' });
    const nonce = randomUUID();
    // Cut after the start event and the first output, so the SDK has surely seen the command start.
    standIn.dropStreams({ afterEvents: 2 });
    const error = await rejection(sandbox.run(bash(`echo started; echo ${nonce} >> ran.txt; sleep 2`), { timeoutMs: 30_000 }));
    assert.match(error.message, /not run again/);
    const starts = standIn.requests.filter((r) => r.path === '/process.Process/Start' && JSON.stringify(r.body).includes(nonce));
    assert.equal(starts.length, 1, 'one Start for the command');
    const runningPids = () => standIn.sandboxes().find((s) => s.sandboxId === sandbox.id)?.runningPids ?? [];
    await waitFor(() => runningPids().length === 0, 10_000, `what was left of the command to be killed (${runningPids().join()})`);
    await sandbox.kill();
  });
});
