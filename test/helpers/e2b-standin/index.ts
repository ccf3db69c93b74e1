import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadConfig } from '../../../src/config.js';
import { findOpencodeBinary } from '../../../src/core/rollout/opencode-binary.js';
import { createLogger } from '../../../src/log.js';
import { resourcesDir } from '../../../src/paths.js';
import type { CreateLimiter } from '../../../src/sandbox/e2b/create-limiter.js';
import { E2bSandboxProvider } from '../../../src/sandbox/e2b/provider.js';
import type { RetryPolicy } from '../../../src/sandbox/e2b/retry.js';
import { LocalSandboxProvider } from '../../../src/sandbox/local/provider.js';
import { ControlPlane, type CreateFailure } from './control-plane.js';
import { Envd, type StreamDrop } from './envd.js';
import { headerRecord, readBody, sendJson, type RecordedRequest } from './http-util.js';
import { NPM_CACHE_TEMPLATE, ROOT_OWNED_DIRS, SandboxRegistry, type StandInSandboxInfo } from './registry.js';

export type { CreateFailure } from './control-plane.js';
export type { StreamDrop } from './envd.js';
export type { RecordedRequest } from './http-util.js';
export type { SandboxUser, StandInSandboxInfo } from './registry.js';
export { NPM_CACHE_TEMPLATE } from './registry.js';

export interface E2bStandInOptions {
  /** The key the control plane accepts in `X-API-KEY`. Default `e2b_standin_key`. */
  apiKey?: string;
  /** Host directory under which sandbox directories are made. Default: the system temp directory. */
  sandboxRootDir?: string;
  /**
   * Templates whose sandboxes have no opencode on PATH, as E2B's `base`. Every other template name has it (this
   * project's opencode binary), as one built from resources/e2b would. Default `['base', NPM_CACHE_TEMPLATE]`.
   */
  templatesWithoutOpencode?: string[];
}

export interface E2bStandIn {
  /** For `E2B_API_URL` / the `apiUrl` option. */
  apiUrl: string;
  /** For `E2B_SANDBOX_URL` / the `sandboxUrl` option: one envd for every sandbox, routed by `E2b-Sandbox-Id`. */
  sandboxUrl: string;
  apiKey: string;
  sandboxes(): StandInSandboxInfo[];
  /** Every request to either server, in arrival order. */
  requests: RecordedRequest[];
  /** The next create calls answer these, one each, instead of creating (e.g. `{ status: 429, retryAfterS: 0 }`). */
  failCreates(...failures: CreateFailure[]): void;
  /** The next Start/Connect streams are cut after `afterEvents` events, one drop each. */
  dropStreams(...drops: StreamDrop[]): void;
  /** Kills a sandbox behind the SDK's back, as a crash or E2B itself would: its streams drop, later calls get 502/404. */
  killSandbox(sandboxId: string): Promise<void>;
  /** Kills every sandbox and stops both servers. */
  close(): Promise<void>;
}

const SYSTEM_PYTHON = '/usr/bin/python3';

type Handler = (req: IncomingMessage, res: ServerResponse, url: URL, body: Buffer, record: RecordedRequest) => Promise<void>;

async function listen(
  name: RecordedRequest['server'],
  requests: RecordedRequest[],
  handler: Handler,
): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://stand-in');
    const record: RecordedRequest = {
      server: name,
      method: req.method ?? 'GET',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: headerRecord(req),
      body: undefined,
      at: performance.now(),
    };
    requests.push(record);
    res.on('finish', () => (record.status = res.statusCode));
    void (async () => {
      try {
        await handler(req, res, url, await readBody(req), record);
      } catch (error) {
        if (!res.headersSent) sendJson(res, 500, { code: 500, message: (error as Error).message });
        else res.destroy();
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/**
 * An offline E2B: the control plane and envd over real HTTP on 127.0.0.1, for the real `e2b` SDK. Each sandbox is
 * a sandbox of this project's local backend, forced to bubblewrap with its network cut off (one network namespace
 * per sandbox with only loopback, shared by its commands as in one VM; own pid namespace per command), so commands
 * really run, reach each other on 127.0.0.1, and cannot reach the host. Commands and file operations run as the user the
 * request names (registry.ts): `user`, the sandbox's unprivileged uid and the default, or `root`, who alone writes
 * /opt and /root, can chown, read and write `user`'s files and signal its processes (`pkill -u user`).
 */
export async function startE2bStandIn(options: E2bStandInOptions = {}): Promise<E2bStandIn> {
  const apiKey = options.apiKey ?? 'e2b_standin_key';
  const config = loadConfig({
    OPENCODE_ENV_ISOLATION: 'bwrap',
    OPENCODE_ENV_SANDBOX_NETWORK: 'isolated',
    // A system Python every uid can run: an interpreter under root's home (pyenv) would make the local backend keep
    // root for every command, and then `user` would be root too.
    ...(existsSync(SYSTEM_PYTHON) ? { OPENCODE_ENV_PYTHON: SYSTEM_PYTHON } : {}),
    ...(options.sandboxRootDir ? { OPENCODE_ENV_SANDBOX_DIR: options.sandboxRootDir } : {}),
  });
  const provider = new LocalSandboxProvider({
    settings: config.sandbox.local,
    resourcesDir,
    binaries: { node: process.execPath, opencode: findOpencodeBinary(null) },
    logger: createLogger('silent'),
    rootUser: { dirs: ROOT_OWNED_DIRS },
    // One loopback per sandbox, as in one E2B VM: a listener a command opens on 127.0.0.1 (the LLM relay) serves later ones.
    sharedNetwork: true,
  });
  const registry = new SandboxRegistry(provider, options.templatesWithoutOpencode ?? ['base', NPM_CACHE_TEMPLATE]);
  const controlPlane = new ControlPlane(apiKey, registry);
  const envd = new Envd(registry);
  const requests: RecordedRequest[] = [];
  const api = await listen('api', requests, (...args) => controlPlane.handle(...args));
  const sandboxServer = await listen('envd', requests, (...args) => envd.handle(...args));

  let closing: Promise<void> | null = null;
  return {
    apiUrl: api.url,
    sandboxUrl: sandboxServer.url,
    apiKey,
    requests,
    sandboxes: () => registry.all().map((sandbox) => sandbox.info()),
    failCreates: (...failures) => controlPlane.createFailures.push(...failures),
    dropStreams: (...drops) => envd.streamDrops.push(...drops),
    killSandbox: async (sandboxId) => {
      const sandbox = registry.get(sandboxId);
      if (sandbox) await registry.kill(sandbox, 'external');
    },
    close: () =>
      (closing ??= (async () => {
        await registry.killAll();
        for (const server of [api.server, sandboxServer.server]) {
          server.closeAllConnections();
          await new Promise<void>((resolve) => server.close(() => resolve()));
        }
      })()),
  };
}

/**
 * The environment that points a server (or the CLI) at the stand-in: the SDK reads E2B_API_URL and E2B_SANDBOX_URL
 * itself, the server never sets them; creations are not paced (the stand-in has no rate limit).
 */
export function serverEnv(standIn: E2bStandIn, extra: Record<string, string> = {}): Record<string, string> {
  return {
    E2B_API_KEY: standIn.apiKey,
    E2B_API_URL: standIn.apiUrl,
    E2B_SANDBOX_URL: standIn.sandboxUrl,
    OPENCODE_ENV_E2B_CREATE_PER_S: '50',
    ...extra,
  };
}

export interface StandInProviderOptions {
  /** Default: the stand-in's own key. */
  apiKey?: string;
  /** Default: the stand-in's control plane. */
  apiUrl?: string;
  template?: string;
  createPerSecond?: number;
  serverInstanceId?: string;
  retryPolicy?: RetryPolicy;
  limiter?: CreateLimiter;
}

/** This project's E2B provider pointed at the stand-in through explicit options (never through E2B_* variables). */
export function standInProvider(standIn: E2bStandIn, options: StandInProviderOptions = {}): E2bSandboxProvider {
  return new E2bSandboxProvider(
    {
      settings: {
        apiKey: options.apiKey ?? standIn.apiKey,
        template: options.template ?? 'opencode-env-test',
        createPerSecond: options.createPerSecond ?? 50,
        serverInstanceId: options.serverInstanceId ?? 'test-instance',
        apiUrl: options.apiUrl ?? standIn.apiUrl,
        sandboxUrl: standIn.sandboxUrl,
      },
      resourcesDir,
      logger: createLogger('silent'),
      ...(options.retryPolicy ? { retryPolicy: options.retryPolicy } : {}),
    },
    options.limiter,
  );
}
