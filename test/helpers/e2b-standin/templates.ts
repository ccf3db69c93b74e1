import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { unpackTar } from '../../../src/util/tar.js';
import type { RecordedRequest } from './http-util.js';
import { sendJson } from './http-util.js';

/** A template whose name starts with this fails its build (status `error`), for tests of the failure path. */
export const FAILING_TEMPLATE_PREFIX = 'fail-';

interface BuildStep {
  type: string;
  args: string[];
  filesHash?: string;
}

interface Build {
  templateId: string;
  buildId: string;
  name: string;
  triggered: boolean;
  logEntries: { timestamp: string; level: 'info' | 'error'; message: string }[];
  failure?: { message: string; step: number };
}

/** The regular files of a tar archive, by path. */
function untar(archive: Buffer): Record<string, string> {
  return Object.fromEntries(
    unpackTar(archive).flatMap((entry) => (entry.type === 'file' ? [[entry.path, entry.content.toString('utf8')]] : [])),
  );
}

function notFound(res: ServerResponse, what: string): void {
  sendJson(res, 404, { code: 404, message: `${what} not found` });
}

/**
 * E2B's template build API, as much of it as `Template.build` uses: request a build (`POST /v3/templates`), ask
 * where to upload each COPY's files (`GET /templates/:id/files/:hash`, answered with an upload URL on this server
 * that stands in for E2B's signed storage URL), take the gzipped tar (`PUT`), start the build with the steps
 * (`POST /v2/templates/:id/builds/:buildId`), and report its status with its log (`GET .../status`). Nothing is
 * built: a started build is `ready` at once (or `error` for a name starting with FAILING_TEMPLATE_PREFIX). What the
 * SDK sent is in the recorded requests: the steps in the start request's body, the archive's files in the upload's.
 */
export class TemplateBuilds {
  private readonly builds = new Map<string, Build>();
  private readonly uploads = new Map<string, Record<string, string>>();
  /** Upload URLs carry this instead of an API key, as a signed URL does. */
  private readonly uploadToken = randomBytes(8).toString('hex');

  serves(pathname: string): boolean {
    return /^\/(v2\/|v3\/)?templates(\/|$)/.test(pathname) || pathname.startsWith('/_upload/');
  }

  async handle(req: IncomingMessage, res: ServerResponse, url: URL, body: Buffer, record: RecordedRequest, apiKey: string): Promise<void> {
    const method = req.method ?? 'GET';
    const parts = url.pathname.split('/').filter(Boolean);
    if (method === 'PUT' && parts[0] === '_upload') return this.upload(res, url, parts[1] ?? '', body, record);
    if (req.headers['x-api-key'] !== apiKey) {
      sendJson(res, 401, { code: 401, message: 'Invalid API key, it must start with "e2b_" prefix and be valid' });
      return;
    }
    const json = (body.length > 0 ? JSON.parse(body.toString('utf8')) : {}) as Record<string, unknown>;
    record.body = body.length > 0 ? json : undefined;

    if (method === 'POST' && url.pathname === '/v3/templates') return this.request(res, json);
    // `Template.exists(name)`: a template exists once a build of that name is ready.
    if (method === 'GET' && parts[0] === 'templates' && parts[1] === 'aliases' && parts.length === 3) {
      const ready = [...this.builds.values()].find((b) => b.name === decodeURIComponent(parts[2]!) && b.triggered && !b.failure);
      return ready ? sendJson(res, 200, { templateID: ready.templateId, public: false }) : notFound(res, `template ${parts[2]}`);
    }
    const build = this.builds.get(parts[0] === 'v2' ? (parts[4] ?? '') : (parts[3] ?? ''));
    if (method === 'GET' && parts[0] === 'templates' && parts[2] === 'files' && parts.length === 4) {
      const hash = parts[3]!;
      const present = this.uploads.has(hash);
      return sendJson(res, 201, {
        present,
        ...(present ? {} : { url: `http://${req.headers.host}/_upload/${hash}?token=${this.uploadToken}` }),
      });
    }
    if (method === 'POST' && parts[0] === 'v2' && parts[3] === 'builds' && parts.length === 5) {
      if (!build || build.templateId !== parts[2]) return notFound(res, `build ${parts[4]}`);
      return this.start(res, build, json);
    }
    if (method === 'GET' && parts[0] === 'templates' && parts[2] === 'builds' && parts[4] === 'status') {
      if (!build || build.templateId !== parts[1]) return notFound(res, `build ${parts[3]}`);
      return this.status(res, build, Number(url.searchParams.get('logsOffset') ?? 0));
    }
    sendJson(res, 404, { code: 404, message: `the stand-in does not serve ${method} ${url.pathname}` });
  }

  private request(res: ServerResponse, body: { name?: unknown; tags?: unknown }): void {
    const [name = '', tag] = (typeof body.name === 'string' ? body.name : '').split(':');
    if (!name) return sendJson(res, 400, { code: 400, message: 'name is required' });
    const existing = [...this.builds.values()].find((b) => b.name === name);
    const build: Build = {
      templateId: existing?.templateId ?? `tpl${randomBytes(6).toString('hex')}`,
      buildId: randomBytes(8).toString('hex'),
      name,
      triggered: false,
      logEntries: [],
    };
    this.builds.set(build.buildId, build);
    const tags = [...(Array.isArray(body.tags) ? body.tags.map(String) : []), ...(tag ? [tag] : [])];
    sendJson(res, 202, { templateID: build.templateId, buildID: build.buildId, tags: tags.length > 0 ? tags : ['default'], names: [name] });
  }

  private upload(res: ServerResponse, url: URL, hash: string, body: Buffer, record: RecordedRequest): void {
    if (url.searchParams.get('token') !== this.uploadToken) return sendJson(res, 403, { code: 403, message: 'bad upload token' });
    const files = untar(gunzipSync(body));
    this.uploads.set(hash, files);
    record.body = { files };
    res.writeHead(200);
    res.end();
  }

  private start(res: ServerResponse, build: Build, template: { steps?: BuildStep[] }): void {
    const log = (level: 'info' | 'error', message: string) =>
      build.logEntries.push({ timestamp: new Date().toISOString(), level, message });
    const steps = template.steps ?? [];
    const missing = steps.find((step) => step.type === 'COPY' && !(step.filesHash && this.uploads.has(step.filesHash)));
    if (missing) return sendJson(res, 400, { code: 400, message: `files of COPY ${missing.args[0]} were not uploaded` });
    build.triggered = true;
    steps.forEach((step, index) => log('info', `[stand-in] step ${index + 1}/${steps.length}: ${step.type} ${step.args.join(' ')}`));
    if (build.name.startsWith(FAILING_TEMPLATE_PREFIX)) {
      build.failure = { message: `step ${steps.length} failed: exit status 1`, step: steps.length };
      log('error', build.failure.message);
    } else log('info', '[stand-in] build ready');
    // An empty 202, with its length said: the SDK's client parses a body otherwise.
    res.writeHead(202, { 'content-length': '0' });
    res.end();
  }

  private status(res: ServerResponse, build: Build, logsOffset: number): void {
    const status = !build.triggered ? 'waiting' : build.failure ? 'error' : 'ready';
    sendJson(res, 200, {
      buildID: build.buildId,
      templateID: build.templateId,
      status,
      logEntries: build.logEntries.slice(logsOffset),
      logs: [],
      ...(build.failure ? { reason: { message: build.failure.message, step: String(build.failure.step), logEntries: [] } } : {}),
    });
  }
}
