import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { listDescendants } from '../../src/util/process-tree.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const cliPath = path.join(repoRoot, 'dist', 'cli.js');
const testTmpRoot = path.join(repoRoot, '.test-tmp');

/** A scratch directory outside /tmp (which sandboxes replace with their own) and outside any home. */
export function makeTempDir(prefix: string): string {
  mkdirSync(testTmpRoot, { recursive: true });
  return mkdtempSync(path.join(testTmpRoot, `${prefix}-`));
}

/**
 * A stand-in for the user's home directory: under the real home, never under /tmp (sandboxes get their
 * own /tmp, which would hide it for the wrong reason) wherever the checkout lives.
 */
export function makeHomeDir(): string {
  const base = path.join(os.homedir(), '.cache', 'opencode-env-tests');
  mkdirSync(base, { recursive: true });
  return mkdtempSync(path.join(base, 'home-'));
}

/** A scratch directory in the system temp dir, outside any git checkout. */
export function makeSystemTempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `opencode-env-test-${prefix}-`));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface RunningServer {
  client: Client;
  transport: StdioClientTransport;
  pid: number;
  /** Everything the server wrote to stderr so far. */
  stderr(): string;
  /** The dir under which the server creates its sandboxes. */
  sandboxRoot: string;
  home: string;
  /** OPENCODE_ENV_DATA_DIR: traces live in <dataDir>/traces. */
  dataDir: string;
  call(name: string, args?: Record<string, unknown>, options?: { signal?: AbortSignal; timeoutMs?: number }): Promise<CallToolResult>;
  /** Calls a tool that must succeed and returns its structured content. */
  callOk<T = Record<string, any>>(name: string, args?: Record<string, unknown>): Promise<T>;
  close(): Promise<void>;
}

export interface StartOptions {
  env?: Record<string, string>;
}

/** Spawns the built server over real stdio and connects the SDK's own client to it. */
export async function startServer(options: StartOptions = {}): Promise<RunningServer> {
  const sandboxRoot = makeSystemTempDir('sandboxes');
  const home = makeHomeDir();
  const dataDir = makeSystemTempDir('data');
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [cliPath],
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      OPENCODE_ENV_SANDBOX_DIR: sandboxRoot,
      OPENCODE_ENV_DATA_DIR: dataDir,
      OPENCODE_ENV_LOG_LEVEL: 'info',
      ...options.env,
    },
    stderr: 'pipe',
  });
  let stderrText = '';
  const stderrStream = transport.stderr as PassThrough | null;
  stderrStream?.on('data', (chunk: Buffer) => {
    stderrText += chunk.toString('utf8');
  });
  const client = new Client({ name: 'opencode-env-tests', version: '0.0.0' });
  await client.connect(transport);
  const pid = transport.pid;
  if (pid === null) throw new Error('server did not start');

  const call: RunningServer['call'] = async (name, args = {}, callOptions = {}) =>
    (await client.callTool({ name, arguments: args }, undefined, {
      timeout: callOptions.timeoutMs ?? 120_000,
      ...(callOptions.signal ? { signal: callOptions.signal } : {}),
    })) as CallToolResult;

  return {
    client,
    transport,
    pid,
    sandboxRoot,
    home,
    dataDir,
    stderr: () => stderrText,
    call,
    async callOk(name, args) {
      const result = await call(name, args);
      if (result.isError) throw new Error(`${name} failed: ${JSON.stringify(result.content)}`);
      return result.structuredContent as any;
    },
    async close() {
      try {
        await client.close();
      } finally {
        for (const dir of [sandboxRoot, home, dataDir]) removeDir(dir);
      }
    },
  };
}

export function errorText(result: CallToolResult): string {
  return (result.content as Array<{ type: string; text?: string }>).map((c) => c.text ?? '').join('\n');
}

export async function waitFor(predicate: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await predicate()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/**
 * The server's child processes that belong to sandboxes: all its descendants except the reaper a root server
 * keeps for the whole of its life (src/sandbox/local/reaper.ts) and the `cat` it waits with, which are not sandbox work.
 */
export async function sandboxDescendants(serverPid: number): Promise<number[]> {
  const read = (pid: number, file: string) => {
    try {
      return readFileSync(`/proc/${pid}/${file}`, 'utf8');
    } catch {
      return '';
    }
  };
  const isReaper = (pid: number) => read(pid, 'cmdline').includes('opencode-env-reaper');
  const parentOf = (pid: number) => {
    const stat = read(pid, 'stat');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  };
  return (await listDescendants(serverPid)).filter((pid) => !isReaper(pid) && !isReaper(parentOf(pid)));
}

/** Each finished trace file (JSON Lines: header, turns, result) as one record. */
export function storedTraces(server: RunningServer): Array<Record<string, any>> {
  const dir = path.join(server.dataDir, 'traces');
  return readdirSync(dir)
    .filter((name) => name.endsWith('.jsonl') && name !== 'index.jsonl')
    .map((name) =>
      readFileSync(path.join(dir, name), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line)),
    )
    .filter((lines) => lines.at(-1)?.type === 'result')
    .map((lines) => ({
      ...lines[0],
      result: lines.at(-1).result,
      turns: lines.filter((line) => line.type === 'turn').map((line) => line.data),
    }));
}

/** The trace's turn records, straight from its file (format version 2: one `{"type":"turn","data":…}` per line). */
export function traceTurns(dataDir: string, rolloutId: string): Array<Record<string, any>> {
  return readFileSync(path.join(dataDir, 'traces', `${rolloutId}.jsonl`), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line))
    .filter((line) => line.type === 'turn')
    .map((line) => line.data);
}
