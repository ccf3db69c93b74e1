/**
 * What a sandbox's LLM channel adds to one streamed LLM turn: a host HTTP server streams an SSE answer of K chunks (a
 * chat completion of K tokens); a node client makes M sequential requests to it and reports each one's time to first
 * byte and total time. The same client runs on the host (the floor), in a local sandbox (loopback bridge to a unix
 * socket) and in an E2B sandbox of the stand-in (relay over envd's command stream), each through `openLlmChannel`.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../src/config.js';
import { findOpencodeBinary } from '../src/core/rollout/opencode-binary.js';
import { createLogger } from '../src/log.js';
import { resourcesDir } from '../src/paths.js';
import { createSandboxProvider } from '../src/sandbox/factory.js';
import type { SandboxProvider } from '../src/sandbox/types.js';
import { standInProvider, type E2bStandIn } from '../test/helpers/e2b-standin/index.js';
import { requestKind, requestsDuring } from './e2b-requests.js';

export interface TurnTiming {
  ttfb: number;
  total: number;
}

/** The client, run with `node -e <script> <base url> <count> <warm-up count>`: prints one JSON array of the timed turns. */
const CLIENT_SCRIPT = `
(async () => {
  const [url, count, warmUp] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
  const timings = [];
  for (let i = 0; i < warmUp + count; i++) {
    const started = performance.now();
    const response = await fetch(url + '/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'bench', stream: true, messages: [{ role: 'user', content: 'go' }] }),
    });
    const reader = response.body.getReader();
    let ttfb = null;
    let text = '';
    const decoder = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      ttfb ??= performance.now() - started;
      text += decoder.decode(value, { stream: true });
    }
    if (!text.endsWith('data: [DONE]\\n\\n')) throw new Error('incomplete stream: ' + text.slice(-200));
    timings.push({ ttfb, total: performance.now() - started });
  }
  console.log(JSON.stringify(timings.slice(warmUp)));
})().catch((error) => { console.error(error); process.exit(1); });
`;

/** An OpenAI-style streaming endpoint: `chunks` SSE events, each its own write, then `[DONE]`. */
export async function startSseServer(chunks: number): Promise<{ server: Server; url: string; close: () => Promise<void> }> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      void (async () => {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        for (let i = 0; i < chunks; i++) {
          res.write(
            `data: ${JSON.stringify({ id: 'bench', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: ` t${i}` } }] })}\n\n`,
          );
          // Each token its own write, as a model streams them, not one coalesced buffer.
          await new Promise((resolve) => setImmediate(resolve));
        }
        res.end('data: [DONE]\n\n');
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

function parseTimings(stdout: string, where: string): TurnTiming[] {
  try {
    return JSON.parse(stdout) as TurnTiming[];
  } catch {
    throw new Error(`the client in ${where} printed no timings: ${stdout.slice(0, 500)}`);
  }
}

/** Runs the client once: `warmUp` discarded turns (a fresh process and connection), then `count` timed ones. */
export interface TurnClient {
  name: string;
  turns(count: number, warmUp: number): Promise<TurnTiming[]>;
  close(): Promise<void>;
}

/** The floor: the same client on the host, straight to the server's TCP port. */
export function hostClient(url: string): TurnClient {
  return {
    name: 'host',
    turns: async (count, warmUp) => {
      const child = spawn(process.execPath, ['-e', CLIENT_SCRIPT, url, String(count), String(warmUp)], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let stdout = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      if (code !== 0) throw new Error(`the host client exited with ${code}`);
      return parseTimings(stdout, 'the host');
    },
    close: async () => {},
  };
}

/** The same client inside a fresh sandbox of `provider`, reaching `server` only through the sandbox's LLM channel. */
export async function sandboxClient(name: string, provider: SandboxProvider, server: Server): Promise<TurnClient> {
  const sandbox = await provider.create({ label: 'bench-channel' });
  try {
    const channel = await sandbox.openLlmChannel((connection) => server.emit('connection', connection));
    const node = await sandbox.binaryPath('node');
    return {
      name,
      turns: async (count, warmUp) => {
        const argv = await channel.command([node, '-e', CLIENT_SCRIPT, channel.url, String(count), String(warmUp)]);
        const result = await sandbox.run(argv, { timeoutMs: 300_000 });
        if (result.exitCode !== 0) throw new Error(`the client in sandbox ${sandbox.id} exited with ${result.exitCode}: ${result.stderr}`);
        return parseTimings(result.stdout, `sandbox ${sandbox.id}`);
      },
      close: async () => {
        await channel.close();
        await sandbox.kill();
      },
    };
  } catch (error) {
    await sandbox.kill();
    throw error;
  }
}

export interface ChannelMeasurement {
  host: TurnTiming[];
  local: TurnTiming[];
  e2b: TurnTiming[];
  /** The relay's stdin writes per e2b turn (warm-up included): how well an answer's chunks are batched. */
  sendInputsPerTurn: number;
}

/**
 * The same streamed turns from the host, a local sandbox and an E2B sandbox of `standIn`, in `rounds` interleaved
 * rounds (a fresh client each, `warmUp` turns discarded), so machine noise and the server warming up hit all alike.
 */
export async function measureChannels(
  standIn: E2bStandIn,
  sizes: { chunks: number; turns: number; rounds: number; warmUp: number },
): Promise<ChannelMeasurement> {
  const sse = await startSseServer(sizes.chunks);
  const rootDir = mkdtempSync(path.join(os.tmpdir(), 'oe-bench-')); // short: a unix socket's path lives under it
  const local = createSandboxProvider(loadConfig({ OPENCODE_ENV_SANDBOX_DIR: rootDir }).sandbox, {
    resourcesDir,
    hiddenPaths: [],
    binaries: () => ({ node: process.execPath, opencode: findOpencodeBinary(null) }),
    logger: createLogger('silent'),
  });
  const e2b = standInProvider(standIn, { template: 'opencode-env', serverInstanceId: 'bench' });
  const clients: TurnClient[] = [];
  try {
    clients.push(hostClient(sse.url), await sandboxClient('local', local, sse.server), await sandboxClient('e2b', e2b, sse.server));
    const turns = new Map<string, TurnTiming[]>(clients.map((client) => [client.name, []]));
    const perRound = Math.ceil(sizes.turns / sizes.rounds);
    let sendInputs = 0;
    for (let round = 0; round < sizes.rounds; round++) {
      for (const client of clients) {
        const batch = await requestsDuring(standIn.requests, () => client.turns(perRound, sizes.warmUp));
        turns.get(client.name)!.push(...batch.value);
        if (client.name === 'e2b') sendInputs += batch.requests.filter((r) => requestKind(r) === 'SendInput').length;
      }
    }
    return {
      host: turns.get('host')!,
      local: turns.get('local')!,
      e2b: turns.get('e2b')!,
      sendInputsPerTurn: sendInputs / (sizes.rounds * (perRound + sizes.warmUp)),
    };
  } finally {
    await Promise.all(clients.map((client) => client.close()));
    await Promise.all([local.killAll(), e2b.killAll(), sse.close()]);
    rmSync(rootDir, { recursive: true, force: true });
  }
}
