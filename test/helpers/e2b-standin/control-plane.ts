import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RecordedRequest } from './http-util.js';
import { sendEmpty, sendJson } from './http-util.js';
import { STAND_IN_ENVD_VERSION, type SandboxRegistry, type StandInSandbox } from './registry.js';
import { TemplateBuilds } from './templates.js';

/** E2B's default sandbox lifetime when create names none. */
const DEFAULT_TIMEOUT_S = 300;

/** An answer the next create calls get instead of a sandbox (429 with Retry-After, 401, 503, ...). */
export interface CreateFailure {
  status: number;
  /** Sent as `Retry-After` (whole seconds), which the SDK's retry honours. */
  retryAfterS?: number;
  message?: string;
}

interface NewSandboxBody {
  templateID?: string;
  metadata?: Record<string, string>;
  envVars?: Record<string, string>;
  timeout?: number;
  allow_internet_access?: boolean;
}

function sandboxJson(sandbox: StandInSandbox): Record<string, unknown> {
  return {
    sandboxID: sandbox.sandboxId,
    templateID: sandbox.templateId,
    clientID: 'e2b-standin',
    envdVersion: STAND_IN_ENVD_VERSION,
    envdAccessToken: sandbox.envdAccessToken,
    trafficAccessToken: null,
    domain: null,
  };
}

function listedJson(sandbox: StandInSandbox): Record<string, unknown> {
  return {
    sandboxID: sandbox.sandboxId,
    templateID: sandbox.templateId,
    clientID: 'e2b-standin',
    metadata: sandbox.metadata,
    startedAt: sandbox.startedAt.toISOString(),
    endAt: sandbox.endAt.toISOString(),
    state: 'running',
    cpuCount: 2,
    memoryMB: 512,
    diskSizeMB: 1024,
    envdVersion: STAND_IN_ENVD_VERSION,
    volumeMounts: [],
  };
}

/**
 * `GET /v2/sandboxes?metadata=...`: the SDK URL-encodes each key and value, joins them as a query string, and
 * sends that string as the `metadata` parameter; every pair must match.
 */
function matchesMetadataFilter(sandbox: StandInSandbox, filter: string | undefined): boolean {
  if (!filter) return true;
  for (const [key, value] of new URLSearchParams(filter)) {
    if (sandbox.metadata[decodeURIComponent(key)] !== decodeURIComponent(value)) return false;
  }
  return true;
}

function notFound(res: ServerResponse, sandboxId: string): void {
  sendJson(res, 404, { code: 404, message: `sandbox "${sandboxId}" not found` });
}

export class ControlPlane {
  readonly createFailures: CreateFailure[] = [];
  /** Template builds (`opencode-env template build`), in templates.ts. */
  private readonly templates = new TemplateBuilds();

  constructor(
    private readonly apiKey: string,
    private readonly registry: SandboxRegistry,
  ) {}

  async handle(req: IncomingMessage, res: ServerResponse, url: URL, body: Buffer, record: RecordedRequest): Promise<void> {
    // Before the key check: uploads go to a URL that carries its own token, as E2B's signed storage URLs do.
    if (this.templates.serves(url.pathname)) return this.templates.handle(req, res, url, body, record, this.apiKey);
    if (req.headers['x-api-key'] !== this.apiKey) {
      sendJson(res, 401, { code: 401, message: 'Invalid API key, it must start with "e2b_" prefix and be valid' });
      return;
    }
    const json = (body.length > 0 ? JSON.parse(body.toString('utf8')) : {}) as Record<string, unknown>;
    record.body = body.length > 0 ? json : undefined;
    const method = req.method ?? 'GET';
    const parts = url.pathname.split('/').filter(Boolean);

    if (method === 'POST' && url.pathname === '/v2/sandboxes') return this.create(res, json);
    if (method === 'GET' && url.pathname === '/v2/sandboxes') return this.list(res, url);

    const sandboxId = parts[0] === 'v2' ? parts[2] : parts[1];
    const route = `${method} ${parts[0] === 'v2' ? '/v2' : ''}/sandboxes/:id${parts.length > (parts[0] === 'v2' ? 3 : 2) ? `/${parts.at(-1)}` : ''}`;
    const sandbox = sandboxId ? this.registry.live(sandboxId) : undefined;
    switch (route) {
      case 'POST /v2/sandboxes/:id/connect': {
        if (!sandbox) return notFound(res, sandboxId!);
        const timeout = (json as { timeout?: number }).timeout;
        // Connecting never shortens a running sandbox's life.
        if (typeof timeout === 'number' && Date.now() + timeout * 1000 > sandbox.endAt.getTime()) sandbox.setLifetime(timeout);
        return sendJson(res, 200, sandboxJson(sandbox));
      }
      case 'POST /sandboxes/:id/timeout': {
        if (!sandbox) return notFound(res, sandboxId!);
        sandbox.setLifetime(Number((json as { timeout?: number }).timeout ?? DEFAULT_TIMEOUT_S));
        return sendEmpty(res, 204);
      }
      case 'DELETE /sandboxes/:id': {
        if (!sandbox) return notFound(res, sandboxId!);
        await this.registry.kill(sandbox, 'api');
        return sendEmpty(res, 204);
      }
      case 'GET /sandboxes/:id': {
        if (!sandbox) return notFound(res, sandboxId!);
        return sendJson(res, 200, { ...listedJson(sandbox), ...sandboxJson(sandbox) });
      }
      default:
        sendJson(res, 404, { code: 404, message: `the stand-in does not serve ${method} ${url.pathname}` });
    }
  }

  private async create(res: ServerResponse, body: NewSandboxBody): Promise<void> {
    const failure = this.createFailures.shift();
    if (failure) {
      const headers: Record<string, string> = failure.retryAfterS !== undefined ? { 'retry-after': String(failure.retryAfterS) } : {};
      sendJson(res, failure.status, { code: failure.status, message: failure.message ?? `injected failure ${failure.status}` }, headers);
      return;
    }
    const sandbox = await this.registry.create({
      templateId: body.templateID ?? 'base',
      metadata: body.metadata ?? {},
      envs: body.envVars ?? {},
      timeoutS: body.timeout ?? DEFAULT_TIMEOUT_S,
      // Recorded only: a stand-in sandbox never has a route out, whatever was asked.
      allowInternetAccess: body.allow_internet_access ?? true,
    });
    sendJson(res, 201, sandboxJson(sandbox));
  }

  private list(res: ServerResponse, url: URL): void {
    const states = (url.searchParams.get('state') ?? 'running,paused').split(',');
    const metadata = url.searchParams.get('metadata') ?? undefined;
    const listed = this.registry
      .all()
      .filter((sandbox) => sandbox.alive && states.includes('running') && matchesMetadataFilter(sandbox, metadata))
      .map(listedJson);
    sendJson(res, 200, listed);
  }
}
