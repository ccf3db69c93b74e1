/**
 * bench:http: execute_python steps over HTTP mode's OpenEnv WebSocket `/ws`, side by side with the same calls over
 * Streamable HTTP MCP (`/mcp`) and over stdio, with 1 and with 16 concurrent sessions, all measured in the same run:
 * steps per second and per-step p50/p95. Target: `/ws` p50 within 1 ms of stdio's (one session).
 * BENCH_CALLS (300 per session), BENCH_SESSIONS (16) set the sizes.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { fmtMs, median, percentile, printTable } from './stats.js';

const CALLS = Number(process.env.BENCH_CALLS ?? 300);
const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 16);
const WARM_UP = 20;
const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli.js');
const scratch = mkdtempSync(path.join(os.tmpdir(), 'opencode-env-bench-http-'));
const env = {
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: process.env.HOME ?? os.homedir(),
  OPENCODE_ENV_SANDBOX: 'local',
  OPENCODE_ENV_SANDBOX_DIR: scratch,
  OPENCODE_ENV_DATA_DIR: path.join(scratch, 'data'),
  OPENCODE_ENV_LOG_LEVEL: 'info',
  MAX_CONCURRENT_ENVS: String(SESSIONS + 2),
};

/** One client session: `step()` runs `x = x + 1` and resolves when its answer is in. */
interface BenchSession {
  step(): Promise<void>;
  close(): Promise<void>;
}

async function startHttpServer(): Promise<{ url: string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [cli, 'http', '--port', '0'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const found = /serving HTTP on (http:\/\/[^"\s]+)/.exec(stderr);
      if (found) resolve(found[1]!);
    });
    child.once('exit', (code) => reject(new Error(`the server exited (${code}): ${stderr}`)));
  });
  return {
    url,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}

async function wsSession(url: string): Promise<BenchSession> {
  const socket = new WebSocket(`${url.replace(/^http/, 'ws')}/ws`);
  await new Promise<void>((resolve, reject) => socket.once('open', () => resolve()).once('error', reject));
  const send = (message: unknown) =>
    new Promise<Record<string, any>>((resolve) => {
      socket.once('message', (data: Buffer) => resolve(JSON.parse(data.toString('utf8')) as Record<string, any>));
      socket.send(JSON.stringify(message));
    });
  await send({ type: 'reset', data: {} });
  await send({ type: 'step', data: { code: 'x = 0' } });
  return {
    step: async () => {
      const reply = await send({ type: 'step', data: { code: 'x = x + 1' } });
      if (reply.type !== 'observation' || reply.data.observation.exit_code !== 0) throw new Error(JSON.stringify(reply));
    },
    // Resolves once the server closed the socket, so its session's slot is free for the next measurement.
    close: () =>
      new Promise<void>((resolve) => {
        socket.once('close', () => resolve());
        socket.send(JSON.stringify({ type: 'close' }));
      }),
  };
}

async function mcpSession(client: Client): Promise<BenchSession> {
  await client.callTool({ name: 'execute_python', arguments: { code: 'x = 0' } });
  return {
    step: async () => {
      const result = await client.callTool({ name: 'execute_python', arguments: { code: 'x = x + 1' } });
      if (result.isError) throw new Error(JSON.stringify(result.content));
    },
    close: () => client.close(),
  };
}

async function streamableSession(url: string): Promise<BenchSession> {
  const client = new Client({ name: 'bench', version: '0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${url}/mcp`)));
  return mcpSession(client);
}

async function stdioSession(): Promise<BenchSession> {
  const client = new Client({ name: 'bench', version: '0' });
  await client.connect(
    new StdioClientTransport({
      command: process.execPath,
      args: [cli],
      env: { ...env, OPENCODE_ENV_LOG_LEVEL: 'error' },
      stderr: 'ignore',
    }),
  );
  return mcpSession(client);
}

/** Runs `calls` steps on each session at once; per-step latencies and steps per second over the whole run. */
async function measure(sessions: BenchSession[], calls: number): Promise<{ latencies: number[]; perSecond: number }> {
  for (const session of sessions) for (let i = 0; i < WARM_UP; i++) await session.step();
  const latencies: number[] = [];
  const started = performance.now();
  await Promise.all(
    sessions.map(async (session) => {
      for (let i = 0; i < calls; i++) {
        const t0 = performance.now();
        await session.step();
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await Promise.all(sessions.map((session) => session.close()));
  return { latencies, perSecond: (sessions.length * calls) / seconds };
}

async function main(): Promise<void> {
  const server = await startHttpServer();
  const rows: string[][] = [];
  const results = new Map<string, number>();
  try {
    for (const count of [1, SESSIONS]) {
      const transports: Array<[string, () => Promise<BenchSession>]> = [
        ['stdio (one server per session)', stdioSession],
        ['OpenEnv /ws', () => wsSession(server.url)],
        ['Streamable HTTP MCP /mcp', () => streamableSession(server.url)],
      ];
      for (const [name, open] of transports) {
        const sessions = await Promise.all(Array.from({ length: count }, open));
        const { latencies, perSecond } = await measure(sessions, count === 1 ? CALLS : Math.ceil(CALLS / 2));
        results.set(`${name}/${count}`, median(latencies));
        rows.push([name, String(count), fmtMs(median(latencies)), fmtMs(percentile(latencies, 95)), perSecond.toFixed(0)]);
      }
    }
  } finally {
    await server.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
  console.log(
    `\nexecute_python steps (\`x = x + 1\`), ${CALLS} per session alone, ${Math.ceil(CALLS / 2)} each with ${SESSIONS} sessions\n`,
  );
  printTable(['transport', 'sessions', 'p50', 'p95', 'steps/s'], rows);
  const ws = results.get('OpenEnv /ws/1')!;
  const stdio = results.get('stdio (one server per session)/1')!;
  const added = ws - stdio;
  console.log(`\n/ws p50 - stdio p50, one session: ${fmtMs(added)} (target <= 1 ms: ${added <= 1 ? 'met' : 'NOT met'})`);
}

await main();
