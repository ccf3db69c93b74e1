// The LLM channel carried over a command's stdin and stdout (resources/sandbox/llm-relay.mjs and
// src/sandbox/relay/relay-mux.ts), exercised through a real local sandbox with no network: the way a remote
// backend (E2B) will carry the agent's LLM traffic, here with bubblewrap's empty network namespace.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { resourcesDir } from '../src/paths.js';
import { createSandboxProvider } from '../src/sandbox/factory.js';
import { openRelayLlmChannel } from '../src/sandbox/relay/relay-channel.js';
import { RelayMux } from '../src/sandbox/relay/relay-mux.js';
import type { Sandbox, SandboxProvider } from '../src/sandbox/types.js';
import { makeSystemTempDir, removeDir } from './helpers/server.js';

const PLACEHOLDER = '__OPENCODE_ENV_LLM_PORT__';

/** A client script run inside the sandbox: its stdout comes back as the relay's command output. */
const CLIENT = `
const base = 'http://127.0.0.1:' + process.env.LLM_PORT;
const started = Date.now();
const results = {};
const big = 'b'.repeat(1024 * 1024);
const posted = await fetch(base + '/v1/echo', { method: 'POST', body: big }).then((r) => r.text());
results.echoLength = posted.length;
const parallel = await Promise.all([1, 2, 3, 4, 5].map((n) => fetch(base + '/v1/hello/' + n).then((r) => r.text())));
results.parallel = parallel;
const stream = await fetch(base + '/v1/stream');
const arrivals = [];
const reader = stream.body.getReader();
for (;;) {
  const { done, value } = await reader.read();
  if (done) break;
  arrivals.push([Date.now() - started, new TextDecoder().decode(value)]);
}
results.arrivals = arrivals;
console.log(JSON.stringify(results));
`;

describe('LLM channel over a relay on stdin/stdout', () => {
  let rootDir: string;
  let provider: SandboxProvider;
  let sandbox: Sandbox;
  const streamSentAt: number[] = [];

  const upstream = http.createServer((req, res) => {
    if (req.url === '/v1/echo') {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => res.end(Buffer.concat(chunks)));
      return;
    }
    if (req.url?.startsWith('/v1/hello/')) return void res.end(`hello ${req.url.slice('/v1/hello/'.length)}`);
    if (req.url === '/v1/stream') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      let sent = 0;
      const tick = setInterval(() => {
        streamSentAt.push(Date.now());
        res.write(`data: token-${sent}\n\n`);
        if (++sent === 5) {
          clearInterval(tick);
          res.end();
        }
      }, 300);
      return;
    }
    res.writeHead(404).end();
  });

  before(async () => {
    rootDir = makeSystemTempDir('relay');
    const config = loadConfig({ OPENCODE_ENV_SANDBOX_DIR: rootDir });
    provider = createSandboxProvider(config.sandbox, {
      resourcesDir,
      hiddenPaths: [],
      binaries: () => ({ node: process.execPath }),
      logger: createLogger('silent'),
    });
    sandbox = await provider.create({ label: 'relay' });
  });
  after(async () => {
    await provider.killAll();
    removeDir(rootDir);
  });

  it('carries requests, large bodies, parallel connections and a streamed answer as it arrives', async () => {
    const [node, relay] = await Promise.all([sandbox.binaryPath('node'), sandbox.resourcePath('sandbox/llm-relay.mjs')]);
    await sandbox.writeFile('client.mjs', CLIENT);
    let commandOutput = '';
    let writes = 0;
    let mux: RelayMux | null = null;
    const relayProcess = await sandbox.start([node, relay, '--', node, 'client.mjs'], {
      env: { LLM_PORT: PLACEHOLDER },
      onStdout: (chunk) => mux!.push(chunk),
    });
    mux = new RelayMux({
      write: async (text) => {
        writes += 1;
        await relayProcess.write(text);
      },
      accept: (connection) => upstream.emit('connection', connection),
      onCommandStdout: (chunk) => (commandOutput += chunk.toString()),
    });
    const exit = await relayProcess.exited;
    assert.equal(exit.exitCode, 0, `the client failed (${mux.problem ?? 'no relay problem'}): ${commandOutput}`);
    assert.equal(mux.problem, null);
    assert.ok((await mux.port) > 0, 'the relay reported its port');

    const results = JSON.parse(commandOutput.trim()) as { echoLength: number; parallel: string[]; arrivals: Array<[number, string]> };
    assert.equal(results.echoLength, 1024 * 1024, 'a 1 MiB body went there and back whole');
    assert.deepEqual(results.parallel, ['hello 1', 'hello 2', 'hello 3', 'hello 4', 'hello 5']);
    const text = results.arrivals.map(([, chunk]) => chunk).join('');
    assert.equal(text, [0, 1, 2, 3, 4].map((n) => `data: token-${n}\n\n`).join(''));
    // Streamed, not held back: the first token reached the client long before the last was sent (1.2 s apart).
    assert.ok(results.arrivals.length >= 3, `the stream arrived in ${results.arrivals.length} pieces, not as it was sent`);
    const spread = results.arrivals.at(-1)![0] - results.arrivals[0]![0];
    assert.ok(spread > 800, `the pieces arrived within ${spread} ms of each other: held back until the end`);
    assert.ok(writes < 200, `frames to the sandbox were batched (${writes} writes)`);
    mux.close();
  });

  it('a relay whose frames break the protocol is cut off, not believed', () => {
    const accepted: unknown[] = [];
    const mux = new RelayMux({ write: async () => {}, accept: (c) => accepted.push(c), maxFrameBytes: 1024 });
    mux.push(Buffer.from('O 1\nQ 1 junk\n'));
    assert.match(mux.problem ?? '', /unknown frame kind/);
    mux.push(Buffer.from('O 2\n'));
    assert.equal(accepted.length, 1, 'nothing is read after a violation');

    const flooded = new RelayMux({ write: async () => {}, accept: () => {}, maxFrameBytes: 1024 });
    for (let i = 0; i < 10; i += 1) flooded.push(Buffer.alloc(512, 0x41));
    assert.match(flooded.problem ?? '', /size limit/, 'a line without end is bounded');
  });
});

// A remote sandbox shares one network among its commands, so the relay runs on its own and any later command
// uses its URL. Plain processes on the host network stand in for that here.
describe('openRelayLlmChannel: a relay for the whole sandbox life, used by later commands', () => {
  let rootDir: string;
  let provider: SandboxProvider;
  let sandbox: Sandbox;
  const upstream = http.createServer((req, res) => res.end(`answered ${req.method} ${req.url}`));

  before(async () => {
    rootDir = makeSystemTempDir('relay-channel');
    const config = loadConfig({ OPENCODE_ENV_SANDBOX_DIR: rootDir, OPENCODE_ENV_ISOLATION: 'none' });
    provider = createSandboxProvider(config.sandbox, {
      resourcesDir,
      hiddenPaths: [],
      binaries: () => ({ node: process.execPath }),
      logger: createLogger('silent'),
    });
    sandbox = await provider.create({ label: 'relay-channel' });
  });
  after(async () => {
    await provider.killAll();
    removeDir(rootDir);
  });

  it('gives a plain loopback URL that a separate command reaches the host through, and closes cleanly', async () => {
    const channel = await openRelayLlmChannel(sandbox, (connection) => upstream.emit('connection', connection));
    assert.match(channel.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const node = await sandbox.binaryPath('node');
    const script = `fetch(process.argv[1] + '/v1/chat/completions', { method: 'POST', body: '{}' }).then((r) => r.text()).then(console.log)`;
    const result = await sandbox.run(await channel.command([node, '-e', script, channel.url]), { timeoutMs: 30_000 });
    assert.equal(result.stdout.trim(), 'answered POST /v1/chat/completions', result.stderr);
    await channel.close();
    const after = await sandbox.run([node, '-e', script, channel.url], { timeoutMs: 30_000 });
    assert.notEqual(after.exitCode, 0, 'nothing listens once the channel is closed');
  });
});
