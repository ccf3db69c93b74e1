import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import WebSocket from 'ws';
import { cliPath } from '../test/helpers/server.js';
import { reapSurvivors } from './leftovers.js';
import { serverEnv, ServerProcess } from './server-process.js';
import { keyScan } from './secrets.js';
import type { Workspace } from './server.js';

/** The server under attack: this checkout's build, or another one (RELIABILITY_CLI=/path/to/dist/cli.js). */
const serverCli = process.env.RELIABILITY_CLI || cliPath;

export interface HttpServerOptions {
  env?: Record<string, string>;
  /** Start on the directories of an earlier server (a restart). */
  workspace?: Workspace;
}

export interface HttpAnswer {
  status: number;
  headers: Headers;
  text: string;
  /** The body as JSON, or undefined when it is not JSON. */
  json: any;
}

export interface RequestOptions {
  /** A string or Buffer is sent as is; anything else as JSON. */
  body?: unknown;
  headers?: Record<string, string>;
  /** Send the server's token as a bearer header (the default when the server has one). */
  auth?: boolean;
  timeoutMs?: number;
}

/** `opencode-env http --port 0` (the built server) on a Workspace: its URL, its process, and a client for its routes. */
export class HttpServer extends ServerProcess {
  url = '';

  private constructor(
    label: string,
    workspace: Workspace,
    child: ChildProcessWithoutNullStreams,
    /** OPENCODE_ENV_TOKEN, if the server has one. */
    readonly token: string | null,
  ) {
    super(label, workspace, child);
  }

  static async start(label: string, workspace: Workspace, options: HttpServerOptions = {}): Promise<HttpServer> {
    const env = serverEnv(workspace, { OPENCODE_ENV_SANDBOX: 'local', ...options.env });
    const child = spawn(process.execPath, [serverCli, 'http', '--port', '0'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const server = new HttpServer(label, workspace, child, env.OPENCODE_ENV_TOKEN || null);
    const started = performance.now();
    while (!server.url) {
      const match = /serving HTTP on (http:\/\/[^\s"]+)/.exec(server.stderr());
      if (match) server.url = match[1]!;
      else if (!server.alive || performance.now() - started > 30_000) {
        child.kill('SIGKILL');
        await server.exited;
        keyScan.scan(`${label}: stderr`, server.stderr());
        throw new Error(`HTTP server did not start; stderr: ${server.stderr().slice(-400)}`);
      } else await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return server;
  }

  get wsUrl(): string {
    return this.url.replace(/^http/, 'ws');
  }

  authHeaders(): Record<string, string> {
    return this.token ? { authorization: `Bearer ${this.token}` } : {};
  }

  /** One HTTP request; every answer is kept for the key scan. */
  async request(method: string, path: string, options: RequestOptions = {}): Promise<HttpAnswer> {
    const { body } = options;
    const raw = body === undefined || typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
    const response = await fetch(`${this.url}${path}`, {
      method,
      redirect: 'manual',
      headers: {
        ...(raw !== undefined ? { 'content-type': 'application/json' } : {}),
        ...(options.auth === false ? {} : this.authHeaders()),
        ...options.headers,
      },
      ...(raw !== undefined ? { body: raw as string | Uint8Array } : {}),
      signal: AbortSignal.timeout(options.timeoutMs ?? 120_000),
    });
    const text = await response.text();
    keyScan.scan(`${this.label}: ${method} ${path} answer`, text);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: response.status, headers: response.headers, text, json };
  }

  /** A WebSocket on `path` (`/ws` by default), with the token as a bearer header unless `auth` is false. */
  socket(path = '/ws', options: { auth?: boolean; headers?: Record<string, string> } = {}): Promise<WsClient> {
    const headers = { ...(options.auth === false ? {} : this.authHeaders()), ...options.headers };
    return WsClient.open(`${this.wsUrl}${path}`, headers, this.label);
  }

  /** One /ws code step on a fresh connection: its CodeObservation, or the error frame. */
  async pythonOnce(code: string): Promise<Record<string, any>> {
    const socket = await this.socket();
    try {
      return await socket.request({ type: 'step', data: { code } });
    } finally {
      await socket.close();
    }
  }
}

/** A WebSocket client as OpenEnv's: one message, one reply. Frames that are not JSON come back as `{ raw }`. */
export class WsClient {
  private readonly frames: unknown[] = [];
  private readonly waiting: Array<(frame: unknown) => void> = [];
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(
    readonly ws: WebSocket,
    private readonly label: string,
  ) {
    ws.on('message', (data: Buffer) => {
      const text = data.toString('utf8');
      keyScan.scan(`${label}: WebSocket frame`, text);
      let frame: unknown;
      try {
        frame = JSON.parse(text);
      } catch {
        frame = { raw: text };
      }
      const deliver = this.waiting.shift();
      if (deliver) deliver(frame);
      else this.frames.push(frame);
    });
    ws.on('error', () => undefined); // reported through `closed`
    this.closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  /** Opens `url`; a refused handshake rejects with `handshake refused: <status>`. */
  static open(url: string, headers: Record<string, string>, label: string): Promise<WsClient> {
    const ws = new WebSocket(url, { headers, maxPayload: 256 * 1024 * 1024 });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new WsClient(ws, label)));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => {
        reject(new Error(`handshake refused: ${res.statusCode}`));
        res.resume();
        ws.terminate();
      });
    });
  }

  /** The next frame from the server; rejects if none comes within `timeoutMs` or the socket closes first. */
  next(timeoutMs = 120_000): Promise<any> {
    if (this.frames.length > 0) return Promise.resolve(this.frames.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.splice(this.waiting.indexOf(deliver), 1);
        reject(new Error(`no frame within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      const deliver = (frame: unknown) => {
        clearTimeout(timer);
        resolve(frame);
      };
      this.waiting.push(deliver);
      void this.closed.then(({ code }) => {
        if (!this.waiting.includes(deliver)) return;
        this.waiting.splice(this.waiting.indexOf(deliver), 1);
        clearTimeout(timer);
        reject(new Error(`socket closed (${code}) before a reply`));
      });
    });
  }

  /** Sends `message` (a string or Buffer as is, as a binary frame if `binary`; anything else as JSON) and waits for one reply. */
  request(message: unknown, options: { timeoutMs?: number; binary?: boolean } = {}): Promise<any> {
    this.send(message, options.binary);
    return this.next(options.timeoutMs);
  }

  send(message: unknown, binary = false): void {
    const data = typeof message === 'string' || Buffer.isBuffer(message) ? message : JSON.stringify(message);
    this.ws.send(data, { binary });
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** A polite close (a close frame, as OpenEnv's client sends on exit), then waits for the socket to end. */
  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: 'close' }));
    const timer = setTimeout(() => this.ws.terminate(), 5000);
    await this.closed;
    clearTimeout(timer);
  }

  /** Drops the connection without a close frame, as a client that crashes or loses its network does. */
  terminate(): void {
    this.ws.terminate();
  }
}

/** How long a server may take to exit on SIGTERM (the shutdown grace is 10 s by default). */
const EXIT_WAIT_MS = 20_000;

/**
 * The after-case checks of an HTTP server, as the stdio ones: it still answers a /ws execute_python step (unless the case
 * `ended` it), exits on SIGTERM within the wait, leaves no process of its tree behind; its stderr goes to the key scan.
 * The workspace's leftover sandboxes and directories are checked by the harness. Returns the failures.
 */
export async function finishHttpServer(server: HttpServer, ended: boolean): Promise<string[]> {
  const failures: string[] = [];
  if (!server.alive) {
    if (!ended) failures.push(`HTTP server ${server.label} died (stderr: ${tail(server.stderr())})`);
  } else if (!ended) {
    try {
      const frame = await server.pythonOnce('print(6 * 7)');
      if (frame?.data?.observation?.stdout !== '42\n')
        failures.push(`next /ws step (print(6 * 7)) did not answer 42: ${JSON.stringify(frame).slice(0, 200)}`);
    } catch (error) {
      failures.push(`next /ws step (print(6 * 7)) failed: ${(error as Error).message}`);
    }
  }
  if (server.alive) {
    await server.kill('SIGTERM');
    if (!(await server.waitExit(EXIT_WAIT_MS))) {
      failures.push(`HTTP server ${server.label} still running ${EXIT_WAIT_MS / 1000} s after SIGTERM`);
      server.child.kill('SIGKILL');
      await server.exited;
    }
  }
  const survivors = await reapSurvivors(server.treeAtStop, 5000);
  if (survivors.length > 0) {
    failures.push(
      `outlived HTTP server ${server.label}: ${survivors
        .map((p) => `${p.pid} ${p.command}`)
        .join('; ')
        .slice(0, 300)}`,
    );
  }
  keyScan.scan(`${server.label}: stderr`, server.stderr());
  return failures;
}

function tail(text: string): string {
  return text.trim().split('\n').slice(-3).join(' | ').slice(-400);
}
