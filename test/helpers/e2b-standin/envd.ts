import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import {
  connectDeadlineMs,
  ConnectFailure,
  endStreamEnvelope,
  envelope,
  parseEnvelopedRequest,
  writeUnary,
  writeUnaryError,
  CONNECT_HTTP_STATUS,
} from './connect-codec.js';
import * as fs from './filesystem.js';
import { sendEmpty, sendJson, type RecordedRequest } from './http-util.js';
import { sandboxUser, type SandboxRegistry, type SandboxSession, type SandboxUser, type StandInSandbox } from './registry.js';
import type { ProcessConfig, ProcessEvent, StandInProcess } from './sandbox-process.js';

/** Streams of the next Start/Connect calls are cut (socket destroyed) after this many events each. */
export interface StreamDrop {
  afterEvents: number;
}

interface Selector {
  process?: { pid?: number };
}

/** The user of a Connect call: `Authorization: Basic base64("<user>:")`, which the SDK leaves out for the default user. */
function connectUser(req: IncomingMessage): SandboxUser {
  const match = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? '');
  if (!match) return sandboxUser(null);
  return sandboxUser(Buffer.from(match[1]!, 'base64').toString('utf8').split(':')[0]);
}

/** The user of a files REST call: the `username` query parameter (or, failing that, the Connect header). */
function filesUser(req: IncomingMessage, url: URL): SandboxSession['user'] {
  const name = url.searchParams.get('username');
  return name ? sandboxUser(name) : connectUser(req);
}

/**
 * envd as reached through E2B's proxy with one `sandboxUrl` for all sandboxes: the SDK names the sandbox in
 * `E2b-Sandbox-Id` and proves access with `X-Access-Token` (the envdAccessToken from create), on every request.
 */
export class Envd {
  readonly streamDrops: StreamDrop[] = [];

  constructor(private readonly registry: SandboxRegistry) {}

  async handle(req: IncomingMessage, res: ServerResponse, url: URL, body: Buffer, record: RecordedRequest): Promise<void> {
    const sandboxId = String(req.headers['e2b-sandbox-id'] ?? '');
    const sandbox = this.registry.live(sandboxId);
    if (!sandbox) {
      // What E2B's proxy answers for a sandbox that is gone; the SDK turns 502 into TimeoutError / isRunning() false.
      sendJson(res, 502, { sandboxId, message: 'The sandbox was not found', code: 502 });
      return;
    }
    if (req.headers['x-access-token'] !== sandbox.envdAccessToken) {
      sendJson(res, 401, { code: 401, message: 'invalid access token' });
      return;
    }
    const route = `${req.method} ${url.pathname}`;
    try {
      if (route === 'GET /health') return sendEmpty(res, 204);
      if (route === 'GET /files') return await this.readFile(res, sandbox.as(filesUser(req, url)), url);
      if (route === 'POST /files') return await this.writeFiles(req, res, sandbox.as(filesUser(req, url)), url, body);
      if (route === 'POST /process.Process/Start' || route === 'POST /process.Process/Connect') {
        const request = parseEnvelopedRequest(body) as Record<string, unknown>;
        record.body = request;
        const process = url.pathname.endsWith('Start') ? this.start(sandbox, request, connectUser(req)) : this.find(sandbox, request);
        return this.stream(req, res, sandbox, process);
      }
      const request = (body.length > 0 ? JSON.parse(body.toString('utf8')) : {}) as Record<string, unknown>;
      record.body = request;
      return writeUnary(res, await this.unary(sandbox, connectUser(req), url.pathname, request));
    } catch (error) {
      const failure = error instanceof ConnectFailure ? error : new ConnectFailure('internal', (error as Error).message);
      if (url.pathname === '/files')
        sendJson(res, CONNECT_HTTP_STATUS[failure.code], { code: CONNECT_HTTP_STATUS[failure.code], message: failure.message });
      else if (res.headersSent) res.end(endStreamEnvelope(failure));
      else writeUnaryError(res, failure);
    }
  }

  private start(sandbox: StandInSandbox, request: Record<string, unknown>, user: SandboxUser): StandInProcess {
    const config = (request.process ?? {}) as Partial<ProcessConfig>;
    if (!config.cmd) throw new ConnectFailure('invalid_argument', 'process.cmd is required');
    return sandbox.startProcess(
      { cmd: config.cmd, args: config.args ?? [], envs: config.envs ?? {}, ...(config.cwd ? { cwd: config.cwd } : {}) },
      request.stdin === true,
      user,
    );
  }

  private find(sandbox: StandInSandbox, request: Selector): StandInProcess {
    const pid = request.process?.pid;
    const process = pid === undefined ? undefined : sandbox.processes.get(pid);
    if (!process) throw new ConnectFailure('not_found', `process with pid ${pid} not found`);
    return process;
  }

  /** A server stream of process events: start, data..., end, then the end-stream envelope. */
  private stream(req: IncomingMessage, res: ServerResponse, sandbox: StandInSandbox, process: StandInProcess): void {
    const drop = this.streamDrops.shift();
    let sent = 0;
    let finished = false;
    res.writeHead(200, { 'content-type': 'application/connect+json' });
    const timers: NodeJS.Timeout[] = [];
    const close = () => {
      finished = true;
      unsubscribe();
      timers.forEach(clearTimeout);
      sandbox.openStreams.delete(cut);
    };
    const cut = () => {
      close();
      res.destroy();
    };
    const send = (event: ProcessEvent | { keepalive: Record<string, never> }) => {
      if (finished) return;
      res.write(envelope({ event }));
      if (drop && ++sent >= drop.afterEvents) cut();
    };
    const unsubscribe = process.subscribe((event) => {
      send(event);
      if ('end' in event && !finished) {
        close();
        res.end(endStreamEnvelope());
      }
    });
    sandbox.openStreams.add(cut);
    res.on('close', close);
    send({ start: { pid: process.pid } });

    const deadline = connectDeadlineMs(req);
    if (deadline !== null) {
      // envd ends the call at its deadline; the process itself keeps running, as on E2B.
      timers.push(
        setTimeout(() => {
          if (finished) return;
          close();
          res.end(endStreamEnvelope(new ConnectFailure('deadline_exceeded', 'context deadline exceeded')));
        }, deadline),
      );
    }
    const keepaliveS = Number(req.headers['keepalive-ping-interval']);
    if (Number.isFinite(keepaliveS) && keepaliveS > 0) {
      const ping = setInterval(() => send({ keepalive: {} }), keepaliveS * 1000);
      timers.push(ping);
    }
    if (process.end && !finished) {
      send({ end: process.end });
      close();
      res.end(endStreamEnvelope());
    }
  }

  private async unary(sandbox: StandInSandbox, user: SandboxUser, method: string, request: Record<string, unknown>): Promise<unknown> {
    const session = sandbox.as(user);
    const target = (key: string) => fs.resolvePath(session, typeof request[key] === 'string' ? request[key] : '');
    switch (method) {
      case '/process.Process/List':
        return {
          processes: [...sandbox.processes.values()].map((process) => ({ config: process.config, pid: process.pid })),
        };
      case '/process.Process/SendInput': {
        const input = (request.input ?? {}) as { stdin?: string };
        await this.find(sandbox, request).write(Buffer.from(input.stdin ?? '', 'base64'));
        return {};
      }
      case '/process.Process/CloseStdin':
        await this.find(sandbox, request).closeStdin();
        return {};
      case '/process.Process/SendSignal': {
        const process = this.find(sandbox, request);
        void process.signal(request.signal === 'SIGNAL_SIGTERM' ? 'SIGTERM' : 'SIGKILL');
        return {};
      }
      case '/filesystem.Filesystem/Stat':
        return { entry: await fs.statEntry(session, target('path')) };
      case '/filesystem.Filesystem/ListDir':
        return { entries: await fs.listDir(session, target('path'), Number(request.depth ?? 1) || 1) };
      case '/filesystem.Filesystem/MakeDir':
        return { entry: await fs.makeDir(session, target('path')) };
      case '/filesystem.Filesystem/Remove':
        await fs.removePath(session, target('path'));
        return {};
      case '/filesystem.Filesystem/Move':
        return { entry: await fs.movePath(session, target('source'), target('destination')) };
      default:
        throw new ConnectFailure('not_found', `the stand-in does not serve ${method}`);
    }
  }

  private async readFile(res: ServerResponse, sandbox: SandboxSession, url: URL): Promise<void> {
    const content = await fs.readFileBytes(sandbox, fs.resolvePath(sandbox, url.searchParams.get('path') ?? ''));
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(content.length) });
    res.end(content);
  }

  /** Multipart (one part per file, the filename its path) or one octet-stream body for `?path=`. */
  private async writeFiles(req: IncomingMessage, res: ServerResponse, sandbox: SandboxSession, url: URL, body: Buffer): Promise<void> {
    const contentType = req.headers['content-type'] ?? '';
    const queryPath = url.searchParams.get('path');
    const files: { path: string; content: Buffer }[] = [];
    if (contentType.startsWith('multipart/form-data')) {
      const form = await new Response(body, { headers: { 'content-type': contentType } }).formData();
      for (const part of form.getAll('file')) {
        if (typeof part === 'string') continue;
        files.push({ path: queryPath ?? part.name, content: Buffer.from(await part.arrayBuffer()) });
      }
    } else {
      if (!queryPath) throw new ConnectFailure('invalid_argument', 'path is required for an octet-stream upload');
      // `gzip: true` uploads send the octet-stream body gzip-compressed.
      files.push({ path: queryPath, content: req.headers['content-encoding'] === 'gzip' ? gunzipSync(body) : body });
    }
    const written = [];
    for (const file of files) {
      const target = fs.resolvePath(sandbox, file.path);
      await fs.writeFileBytes(sandbox, target, file.content);
      written.push({ name: path.posix.basename(target), type: 'file', path: target });
    }
    sendJson(res, 200, written);
  }
}
