import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import { isAlive } from '../src/util/process-tree.js';
import { exampleTask, startScripted } from './helpers/scripted.js';
import {
  cliPath,
  makeHomeDir,
  makeSystemTempDir,
  removeDir,
  sandboxDescendants,
  startServer,
  waitFor,
  type RunningServer,
} from './helpers/server.js';

/** Starts work that leaves processes behind in the sandbox: a background sleeper that even escaped its session. */
const SPAWN_STRAGGLERS =
  "import subprocess\nsubprocess.Popen(['sleep', '300'], start_new_session=True)\nsubprocess.Popen(['sleep', '301'])\n'started'";

async function descendantsWithSleepers(rootPid: number): Promise<number[]> {
  let pids: number[] = [];
  await waitFor(
    async () => {
      pids = await sandboxDescendants(rootPid);
      return pids.length >= 4; // at least bwrap/python plus the two sleepers
    },
    10_000,
    'sandbox processes to appear',
  );
  return pids;
}

describe('nothing is left running', () => {
  it('when the client closes the connection', async () => {
    const server = await startServer();
    await server.callOk('execute_python', { code: SPAWN_STRAGGLERS });
    const pids = await descendantsWithSleepers(server.pid);
    const sandboxRoot = server.sandboxRoot;
    assert.equal(readdirSync(sandboxRoot).length, 1);

    await server.client.close();
    await waitFor(() => !isAlive(server.pid), 10_000, 'the server to exit');
    await waitFor(() => pids.every((pid) => !isAlive(pid)), 10_000, `sandbox processes ${pids.join(',')} to end`);
    assert.deepEqual(readdirSync(sandboxRoot), [], 'sandbox directories are removed');
    await server.close();
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`when the server receives ${signal}`, async () => {
      const server = await startServer();
      await server.callOk('execute_python', { code: SPAWN_STRAGGLERS });
      const pids = await descendantsWithSleepers(server.pid);
      process.kill(server.pid, signal);
      await waitFor(() => !isAlive(server.pid), 10_000, 'the server to exit');
      await waitFor(() => pids.every((pid) => !isAlive(pid)), 10_000, 'sandbox processes to end');
      assert.deepEqual(readdirSync(server.sandboxRoot), []);
      await server.close().catch(() => undefined);
    });
  }

  it('when the server is killed outright (SIGKILL): the sandbox dies with its parent, the next server removes its files', async () => {
    const server = await startServer();
    await server.callOk('execute_python', { code: SPAWN_STRAGGLERS });
    const pids = await descendantsWithSleepers(server.pid);
    const [orphanDir] = readdirSync(server.sandboxRoot);
    process.kill(server.pid, 'SIGKILL');
    await waitFor(() => pids.every((pid) => !isAlive(pid)), 10_000, 'sandbox processes to end');
    assert.ok(orphanDir && existsSync(`${server.sandboxRoot}/${orphanDir}`), 'nobody was left to delete the files');

    const next = await startServer({ env: { OPENCODE_ENV_SANDBOX_DIR: server.sandboxRoot } });
    await next.callOk('execute_python', { code: '1' });
    assert.ok(!existsSync(`${server.sandboxRoot}/${orphanDir}`), 'the orphaned sandbox directory was removed');
    await next.close();
    await server.close().catch(() => undefined);
  });

  it('when the client just closes stdin, without an MCP close', async () => {
    const sandboxRoot = makeSystemTempDir('sandboxes');
    const home = makeHomeDir();
    const child = spawn(process.execPath, [cliPath], {
      env: { PATH: process.env.PATH, HOME: home, OPENCODE_ENV_SANDBOX_DIR: sandboxRoot },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.stdin.end();
    const code = await Promise.race([exited, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 10_000))]);
    assert.equal(code, 0);
    removeDir(sandboxRoot);
    removeDir(home);
  });
});

/** The stored traces' summary lines, read through the CLI (so whatever the storage format, as a user would). */
function listedTraces(dataDir: string): string[] {
  const out = execFileSync(process.execPath, [cliPath, 'traces', 'list'], {
    env: { PATH: process.env.PATH, OPENCODE_ENV_DATA_DIR: dataDir },
    encoding: 'utf8',
  });
  return out.split('\n').filter(Boolean);
}

describe('no trace is lost when the server goes away mid-rollout', () => {
  const endings: Array<[string, (server: RunningServer) => Promise<void>, RegExp]> = [
    ['the client disconnects', (server) => server.client.close(), /cancelled/],
    ['the server receives SIGTERM', async (server) => void process.kill(server.pid, 'SIGTERM'), /cancelled/],
    ['the server receives SIGHUP', async (server) => void process.kill(server.pid, 'SIGHUP'), /cancelled/],
  ];
  for (const [ending, end, expectedError] of endings) {
    it(`stores every in-flight rollout's trace as cancelled when ${ending}`, async () => {
      const stalled = await startScripted({ turns: [{ text: 'thinking very slowly', delay_ms: 120_000 }] });
      const server = await startServer();
      try {
        const calls = ['first', 'second'].map((taskId) =>
          server
            .call('run_rollout', { ...exampleTask(), task_id: taskId, base_url: stalled.url, model: 'scripted-model' })
            .catch(() => null),
        );
        await waitFor(
          () => stalled.requests.filter((q) => q.path === '/v1/chat/completions' && Array.isArray(q.body?.tools)).length >= 2,
          90_000,
          'both agents to call the model',
        );
        await end(server);
        await waitFor(() => !isAlive(server.pid), 20_000, 'the server to exit');
        await Promise.all(calls);
        const traces = listedTraces(server.dataDir);
        assert.equal(traces.length, 2, `two traces stored, got:\n${traces.join('\n')}`);
        for (const line of traces) assert.match(line, expectedError, `trace line: ${line}`);
        assert.deepEqual(readdirSync(server.sandboxRoot), [], 'sandbox directories are removed');
      } finally {
        await server.close().catch(() => undefined);
        await stalled.close();
      }
    });
  }
});

describe('stdout carries only MCP messages', () => {
  it('every line the server writes is a JSON-RPC message, even while sandbox code prints', async () => {
    const sandboxRoot = makeSystemTempDir('sandboxes');
    const home = makeHomeDir();
    const child = spawn(process.execPath, [cliPath], {
      env: { PATH: process.env.PATH, HOME: home, OPENCODE_ENV_SANDBOX_DIR: sandboxRoot, OPENCODE_ENV_LOG_LEVEL: 'debug' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const send = (message: object) => child.stdin.write(`${JSON.stringify(message)}\n`);
    send({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '0' } },
    });
    send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    send({
      jsonrpc: '2.0',
      id: 2,
      method: 'tools/call',
      params: {
        name: 'execute_python',
        arguments: { code: "import os\nprint('to stdout')\nos.system('echo shell-out; echo shell-err >&2')" },
      },
    });
    await waitFor(() => stdout.includes('"id":2'), 30_000, 'the tool call to answer');
    child.stdin.end();
    await new Promise((resolve) => child.once('exit', resolve));

    const lines = stdout.split('\n').filter(Boolean);
    assert.equal(lines.length, 2);
    for (const line of lines) assert.equal(JSON.parse(line).jsonrpc, '2.0');
    assert.match(stderr, /shutting down/, 'logs went to stderr');
    assert.ok(!existsSync(sandboxRoot) || readdirSync(sandboxRoot).length === 0);
    removeDir(sandboxRoot);
    removeDir(home);
  });
});
