import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult, ReadResourceResult, Resource } from '@modelcontextprotocol/sdk/types.js';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cliPath, removeDir } from '../test/helpers/server.js';
import { processTree } from './leftovers.js';
import { serverEnv, ServerProcess } from './server-process.js';
import { keyScan } from './secrets.js';
import { ChildStdioTransport } from './transport.js';

const SANDBOX_DIR_PREFIX = 'opencode-env-';
/** The server under attack: this checkout's build, or another one (RELIABILITY_CLI=/path/to/dist/cli.js). */
const serverCli = process.env.RELIABILITY_CLI || cliPath;

/** The directories a server works in; a restarted server reuses its predecessor's. */
export class Workspace {
  readonly home: string;
  readonly sandboxRoot: string;
  readonly dataDir: string;
  /** Every sandbox any server of this workspace created: what the leftover scan looks for. */
  readonly sandboxIds = new Set<string>();

  constructor(label: string) {
    // Home outside /tmp (sandboxes get a /tmp of their own, which would hide it), as test/helpers/server.ts does.
    const homes = path.join(os.homedir(), '.cache', 'opencode-env-reliability');
    mkdirSync(homes, { recursive: true });
    this.home = mkdtempSync(path.join(homes, `${label}-`));
    // Short: sandbox paths hold unix sockets, whose paths may not exceed 107 bytes.
    this.sandboxRoot = mkdtempSync(path.join(os.tmpdir(), `oe-rel-${label}-`));
    this.dataDir = mkdtempSync(path.join(os.tmpdir(), `oe-rel-${label}-data-`));
  }

  /** Sandbox directories still present under the root (their names carry the sandbox id). */
  sandboxDirs(): string[] {
    const entries = (() => {
      try {
        return readdirSync(this.sandboxRoot);
      } catch {
        return [];
      }
    })();
    for (const entry of entries) if (entry.startsWith(SANDBOX_DIR_PREFIX)) this.sandboxIds.add(entry.slice(SANDBOX_DIR_PREFIX.length));
    return entries;
  }

  remove(): void {
    for (const dir of [this.home, this.sandboxRoot, this.dataDir]) removeDir(dir);
  }
}

export interface ServerOptions {
  env?: Record<string, string>;
  /** Start on the directories of an earlier server (a restart). */
  workspace?: Workspace;
  /** Wraps the server's argv, e.g. to move it into a cgroup before it execs node. */
  wrap?: (argv: string[]) => string[];
}

interface CallOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** The built server (dist/cli.js) on real stdio, with the SDK's client connected to it. */
export class Server extends ServerProcess {
  readonly client = new Client({ name: 'opencode-env-reliability', version: '0.0.0' });

  private constructor(
    label: string,
    workspace: Workspace,
    child: ChildProcessWithoutNullStreams,
    readonly transport: ChildStdioTransport,
  ) {
    super(label, workspace, child);
  }

  static async start(label: string, options: ServerOptions = {}): Promise<Server> {
    const workspace = options.workspace ?? new Workspace(label);
    const argv = [process.execPath, serverCli];
    const [command, ...args] = options.wrap ? options.wrap(argv) : argv;
    const child = spawn(command!, args, {
      env: serverEnv(workspace, options.env),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const server = new Server(label, workspace, child, new ChildStdioTransport(child));
    try {
      await server.client.connect(server.transport, { timeout: 30_000 });
    } catch (error) {
      child.kill('SIGKILL');
      await server.exited;
      keyScan.scan(`${label}: stderr`, server.stderr());
      throw new Error(`server did not start: ${(error as Error).message}; stderr: ${server.stderr().slice(-400)}`, { cause: error });
    }
    return server;
  }

  /** One tool call; every result is kept for the key scan. */
  async call(name: string, args: Record<string, unknown> = {}, options: CallOptions = {}): Promise<CallToolResult> {
    const result = (await this.client.callTool({ name, arguments: args }, undefined, {
      timeout: options.timeoutMs ?? 180_000,
      ...(options.signal ? { signal: options.signal } : {}),
    })) as CallToolResult;
    keyScan.scan(`${this.label}: ${name} result`, JSON.stringify(result));
    this.noteSandboxIds(result.structuredContent);
    return result;
  }

  /** A call that must succeed: its structured content. */
  async callOk(name: string, args: Record<string, unknown> = {}, options: CallOptions = {}): Promise<Record<string, any>> {
    const result = await this.call(name, args, options);
    if (result.isError) throw new Error(`${name} returned an error: ${resultText(result).slice(0, 400)}`);
    return result.structuredContent as Record<string, any>;
  }

  async readResource(uri: string, timeoutMs = 30_000): Promise<ReadResourceResult> {
    const result = await this.client.readResource({ uri }, { timeout: timeoutMs });
    keyScan.scan(`${this.label}: resources/read ${uri.slice(0, 80)}`, JSON.stringify(result));
    return result;
  }

  /** Every listed resource, all pages. */
  async listResources(timeoutMs = 30_000): Promise<Resource[]> {
    const resources: Resource[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.client.listResources(cursor ? { cursor } : {}, { timeout: timeoutMs });
      keyScan.scan(`${this.label}: resources/list`, JSON.stringify(page));
      resources.push(...page.resources);
      cursor = page.nextCursor;
    } while (cursor);
    return resources;
  }

  /** Closes stdin, as a client that goes away does. */
  async disconnect(): Promise<void> {
    if (this.alive) this.treeAtStop = await processTree(this.pid);
    await this.transport.close();
  }

  /** CPU seconds (user + system) the server process has used so far. */
  cpuSeconds(): number {
    const stat = readFileSync(`/proc/${this.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  }
}

export function resultText(result: CallToolResult): string {
  return (result.content as Array<{ type: string; text?: string }>).map((c) => c.text ?? '').join('\n');
}
