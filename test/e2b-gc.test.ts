// No leaked E2B sandboxes, against the offline stand-in: `opencode-env gc` (the built CLI) kills the sandboxes whose
// server instance is gone and nothing else, and a sandbox's lifetime is extended while work goes on, then ends when idle.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { E2B } from 'e2b';
import { INSTANCES_SUBDIR, writeInstanceRecord } from '../src/sandbox/e2b/instances.js';
import { E2bSandboxProvider } from '../src/sandbox/e2b/provider.js';
import { E2B_APP_TAG } from '../src/sandbox/e2b/settings.js';
import { bash } from '../src/sandbox/types.js';
import { standInProvider, startE2bStandIn, type E2bStandIn } from './helpers/e2b-standin/index.js';
import { waitFor } from './helpers/server.js';

const CLI = path.resolve('dist/cli.js');
const HOST = os.hostname();

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The built CLI, asynchronously: the stand-in answers from this process, so it must not be blocked. */
function runCli(args: string[], env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A pid no process has: above any pid in use (and pid_max's default range). */
function deadPid(): number {
  for (let pid = 4_000_000; ; pid++) {
    try {
      process.kill(pid, 0);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ESRCH') return pid;
    }
  }
}

function serverTags(host: string, pid: number, tag: string): Record<string, string> {
  return { app: E2B_APP_TAG, serverInstance: `${host}:${pid}:${tag}`, serverHost: host, serverPid: String(pid) };
}

/** The table's row for a sandbox: its cells, split on the runs of spaces between columns. */
function rowOf(stdout: string, sandboxId: string): string | undefined {
  return stdout.split('\n').find((line) => line.startsWith(`${sandboxId} `));
}

describe('opencode-env gc on the stand-in', () => {
  let standIn: E2bStandIn;
  let dataDir: string;
  let env: Record<string, string>;
  const ids: Record<'dead' | 'reused' | 'live' | 'otherHost' | 'untagged', string> = {
    dead: '',
    reused: '',
    live: '',
    otherHost: '',
    untagged: '',
  };

  before(async () => {
    standIn = await startE2bStandIn();
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'opencode-env-gc-'));
    env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? os.tmpdir(),
      E2B_API_KEY: standIn.apiKey,
      E2B_API_URL: standIn.apiUrl,
      E2B_SANDBOX_URL: standIn.sandboxUrl,
      OPENCODE_ENV_DATA_DIR: dataDir,
    };
    const client = new E2B({ apiKey: standIn.apiKey, apiUrl: standIn.apiUrl, sandboxUrl: standIn.sandboxUrl });
    const create = async (metadata: Record<string, string>) =>
      (await client.Sandbox.create('opencode-env-test', { metadata, timeoutMs: 300_000 })).sandboxId;
    const liveTags = serverTags(HOST, process.pid, 'live');
    // This test process plays a live server: its pid runs, and its instance record names it.
    writeInstanceRecord(path.join(dataDir, INSTANCES_SUBDIR), {
      instanceId: liveTags.serverInstance!,
      pid: process.pid,
      startedAt: new Date().toISOString(),
    });
    ids.dead = await create({ ...serverTags(HOST, deadPid(), 'dead'), rollout_id: 'r-dead' });
    // The same running pid, but no record for this instance: the pid was reused, the instance is gone.
    ids.reused = await create(serverTags(HOST, process.pid, 'reused'));
    ids.live = await create({ ...liveTags, episode_id: 'e-live' });
    ids.otherHost = await create(serverTags('other-host.example', 1, 'far'));
    ids.untagged = await create({ purpose: 'not ours' });
  });

  after(async () => {
    await standIn.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  const state = (id: string) => standIn.sandboxes().find((s) => s.sandboxId === id);

  it('--dry-run lists what it would kill and kills nothing', async () => {
    const result = await runCli(['gc', '--dry-run'], env);
    assert.equal(result.code, 0, `exit 0; stderr: ${result.stderr}`);
    assert.match(result.stdout, /^SANDBOX\s+TEMPLATE\s+INSTANCE\s+HOST\s+STARTED\s+STATE\s+ACTION/m, 'a table header');
    assert.match(rowOf(result.stdout, ids.dead) ?? '', /gone \(no process \d+\)\s+would kill$/, 'the dead instance: would kill');
    assert.match(rowOf(result.stdout, ids.reused) ?? '', /gone \(pid \d+ reused.*\)\s+would kill$/, 'the reused pid: would kill');
    assert.match(rowOf(result.stdout, ids.live) ?? '', /\salive\s+kept$/, 'the live instance: kept');
    assert.match(rowOf(result.stdout, ids.otherHost) ?? '', /unknown \(host other-host\.example\)\s+kept$/, 'another host: kept');
    assert.equal(rowOf(result.stdout, ids.untagged), undefined, 'a sandbox without the app tag is not even listed');
    assert.match(result.stdout, /4 opencode-env sandboxes: 1 alive, 2 gone, 1 unknown; would kill 2 \(dry run\)/, 'the summary');
    for (const id of Object.values(ids)) assert.equal(state(id)?.state, 'running', `${id} still runs after a dry run`);
  });

  it('kills the sandboxes of gone instances, and only those', async () => {
    const result = await runCli(['gc'], env);
    assert.equal(result.code, 0, `exit 0; stderr: ${result.stderr}`);
    assert.match(rowOf(result.stdout, ids.dead) ?? '', /\skilled$/, 'the dead instance: killed');
    assert.match(rowOf(result.stdout, ids.reused) ?? '', /\skilled$/, 'the reused pid: killed');
    assert.match(result.stdout, /; killed 2; kept 1 of other hosts or untagged \(--all-hosts kills them\)$/m, 'the summary');
    assert.equal(state(ids.dead)?.endedBy, 'api', 'the dead instance’s sandbox was killed through the API');
    assert.equal(state(ids.reused)?.endedBy, 'api', 'the reused pid’s sandbox was killed through the API');
    for (const id of [ids.live, ids.otherHost, ids.untagged]) assert.equal(state(id)?.state, 'running', `${id} still runs`);
  });

  it('--all-hosts also kills other hosts’ sandboxes, never a live instance’s or an untagged one', async () => {
    const result = await runCli(['gc', '--all-hosts'], env);
    assert.equal(result.code, 0, `exit 0; stderr: ${result.stderr}`);
    assert.match(rowOf(result.stdout, ids.otherHost) ?? '', /unknown \(host other-host\.example\)\s+killed$/, 'another host: killed');
    assert.equal(state(ids.otherHost)?.endedBy, 'api', 'killed through the API');
    assert.equal(state(ids.live)?.state, 'running', 'the live instance’s sandbox still runs');
    assert.equal(state(ids.untagged)?.state, 'running', 'the untagged sandbox still runs');
  });

  it('without E2B_API_KEY: a clear error naming the variable, exit 2', async () => {
    const { E2B_API_KEY: _key, ...withoutKey } = env;
    const result = await runCli(['gc', '--dry-run'], withoutKey);
    assert.equal(result.code, 2, `exit 2; stderr: ${result.stderr}`);
    assert.match(result.stderr, /E2B_API_KEY/, 'the error names the variable');
  });
});

describe('an E2B sandbox’s lifetime is extended while work goes on', () => {
  let standIn: E2bStandIn;
  let provider: E2bSandboxProvider;

  before(async () => {
    standIn = await startE2bStandIn();
    provider = standInProvider(standIn, { serverInstanceId: 'lifetime-test' });
  });
  after(async () => {
    await provider.killAll();
    await standIn.close();
  });

  const renewals = (id: string) => standIn.requests.filter((r) => r.method === 'POST' && r.path === `/sandboxes/${id}/timeout`).length;

  it('outlives its 3 s lifetime while a command streams output, and then while calls keep coming; ends once idle', async () => {
    const sandbox = await provider.create({ label: 'idle-lifetime', lifetimeMs: 3000 });
    const createdAt = Date.now();
    // 6 s of output, a line every 200 ms: twice the lifetime.
    const result = await sandbox.run(bash('for i in $(seq 1 30); do echo $i; sleep 0.2; done'), { timeoutMs: 30_000 });
    assert.equal(result.exitCode, 0, `the command ran to its end; stderr: ${result.stderr}`);
    assert.ok(Date.now() - createdAt > 4000, 'the command outlasted the lifetime');
    assert.ok(renewals(sandbox.id) > 0, 'E2B’s timeout was extended (POST /sandboxes/:id/timeout)');

    // Calls keep coming: input to a long-lived process every 300 ms for 5 s, no output asked for.
    const cat = await sandbox.start(['cat']);
    const renewedBefore = renewals(sandbox.id);
    for (let i = 0; i < 17; i++) {
      await cat.write(`line ${i}\n`);
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    assert.equal(standIn.sandboxes().find((s) => s.sandboxId === sandbox.id)?.state, 'running', 'alive while input keeps coming');
    assert.ok(renewals(sandbox.id) > renewedBefore, 'renewed while input kept coming');
    assert.ok(renewals(sandbox.id) < 30, `renewals are spaced out, not one per call (${renewals(sandbox.id)})`);

    // Idle: it ends about 3 s after the last activity, here and at E2B.
    const idleSince = Date.now();
    await waitFor(() => standIn.sandboxes().find((s) => s.sandboxId === sandbox.id)?.state === 'killed', 8000, 'the idle sandbox to end');
    const idleFor = Date.now() - idleSince;
    assert.ok(idleFor >= 2500, `it lived on for its lifetime once idle (${idleFor} ms)`);
    await waitFor(() => (sandbox as unknown as { killed: boolean }).killed, 2000, 'the sandbox object to know it ended');
    await assert.rejects(sandbox.run(bash('true'), { timeoutMs: 5000 }), /killed/, 'it refuses work once ended');
  });
});
