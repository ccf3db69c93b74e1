import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { normalizeBaseUrl, type EndpointCatalog, type EndpointName } from './core/rollout/endpoints.js';
import { ConfigError } from './errors.js';
import { DEFAULT_E2B_TEMPLATE, type E2bSandboxSettings } from './sandbox/e2b/settings.js';
import type { SandboxSettings } from './sandbox/factory.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
type LogLevel = (typeof LOG_LEVELS)[number];

const envSchema = z.object({
  OPENCODE_ENV_SANDBOX: z.enum(['auto', 'e2b', 'local']).default('auto'),
  E2B_API_KEY: z.string().min(1).optional(),
  OPENCODE_ENV_E2B_TEMPLATE: z.string().min(1).default(DEFAULT_E2B_TEMPLATE),
  // E2B's entry plan allows one creation per second; a burst of rollouts waits its turn rather than meeting 429s.
  OPENCODE_ENV_E2B_CREATE_PER_S: z.coerce.number().positive().max(1000).default(1),
  // How long an idle episode sandbox lives on E2B (work extends it); E2B's maximum is 1 h (Hobby) or 24 h (Pro).
  OPENCODE_ENV_E2B_LIFETIME_S: z.coerce.number().int().positive().max(86_400).default(3600),
  OPENCODE_ENV_ISOLATION: z.enum(['auto', 'bwrap', 'none']).default('auto'),
  OPENCODE_ENV_SANDBOX_NETWORK: z.enum(['isolated', 'host']).default('isolated'),
  OPENCODE_ENV_SANDBOX_DIR: z.string().min(1).optional(),
  OPENCODE_ENV_PYTHON: z.string().min(1).default('python3'),
  OPENCODE_ENV_LIMIT_FILE_MB: z.coerce.number().int().positive().default(1024),
  OPENCODE_ENV_LIMIT_CPU_S: z.coerce.number().int().positive().default(3600),
  OPENCODE_ENV_LIMIT_PROCESSES: z.coerce.number().int().positive().default(1024),
  // opencode alone peaks around 750 MB; the rest is for what the agent builds and runs (4 sandboxes fit in 8 GB).
  OPENCODE_ENV_LIMIT_MEMORY_MB: z.coerce.number().int().positive().default(2048),
  OPENCODE_ENV_LIMIT_TMP_MB: z.coerce.number().int().positive().default(512),
  OPENCODE_ENV_LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
  OPENCODE_ENV_DATA_DIR: z.string().min(1).optional(),
  OPENCODE_ENV_OPENCODE_BIN: z.string().min(1).optional(),
  MAX_CONCURRENT_ENVS: z.coerce.number().int().positive().max(256).default(4),
  OPENCODE_ENV_UPSTREAM_MAX_FAILURES: z.coerce.number().int().positive().default(3),
  OPENCODE_ENV_WARM_POOL: z.coerce.number().int().min(0).max(64).default(0),
  OPENCODE_ENV_MAX_REQUEST_MB: z.coerce.number().positive().max(1024).default(32),
  OPENCODE_ENV_MAX_TRACE_MB: z.coerce.number().positive().max(1_048_576).default(256),
  OPENCODE_ENV_SHUTDOWN_GRACE_S: z.coerce.number().positive().max(600).default(10),
  XDG_DATA_HOME: z.string().optional(),
  // HTTP mode (`opencode-env http`): loopback unless told otherwise.
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: z.coerce.number().int().min(0).max(65_535).default(8000),
  OPENCODE_ENV_TOKEN: z.string().min(1).optional(),
  OPENCODE_ENV_SESSION_IDLE_S: z.coerce.number().positive().max(86_400).default(600),
  OPENCODE_ENV_HTTP_MAX_BODY_MB: z.coerce.number().positive().max(1024).default(16),
  ENABLE_WEB_INTERFACE: z
    .enum(['true', 'false', '1', '0', 'yes', 'no'])
    .default('true')
    .transform((value) => ['true', '1', 'yes'].includes(value)),
});

/** The named LLM endpoints: which variables configure each, and the defaults (as in OpenEnv's opencode_env). */
const ENDPOINT_VARIABLES: Record<
  EndpointName,
  { url: string; key: string; model: string; defaultUrl: string | null; defaultModel: string }
> = {
  vllm: { url: 'VLLM_URL', key: 'VLLM_API_KEY', model: 'VLLM_MODEL', defaultUrl: null, defaultModel: 'Qwen/Qwen3.5-4B' },
  openai: {
    url: 'OPENAI_BASE_URL',
    key: 'OPENAI_API_KEY',
    model: 'OPENAI_MODEL',
    defaultUrl: 'https://api.openai.com/v1',
    defaultModel: 'gpt-4o-mini',
  },
  hf_router: {
    url: 'HF_ROUTER_BASE_URL',
    key: 'HF_ROUTER_API_KEY',
    model: 'HF_ROUTER_MODEL',
    defaultUrl: 'https://router.huggingface.co/v1',
    defaultModel: 'Qwen/Qwen3-4B-Instruct-2507:nscale',
  },
};

export interface Config {
  /** One section per sandbox backend; `backend` says which one is in use. */
  sandbox: SandboxSettings;
  rollouts: {
    /** How many rollouts may run at once; more wait their turn. */
    maxConcurrent: number;
    /** OPENCODE_ENV_WARM_POOL: sandboxes kept ready with opencode started (0: every rollout starts cold). */
    warmPool: number;
    /** Upstream failures in a row after which a rollout's proxy gives up. */
    upstreamMaxFailures: number;
    /** The agent's LLM requests larger than this are refused by the proxy (and recorded as refused). */
    maxRequestBytes: number;
    /** Named LLM endpoints, validated at start-up. */
    endpoints: EndpointCatalog;
    /** OPENCODE_ENV_OPENCODE_BIN: another opencode binary than the opencode-ai dependency's. */
    opencodeBinary: string | null;
  };
  /** Where traces are stored. */
  dataDir: string;
  /** OPENCODE_ENV_MAX_TRACE_MB: past this many bytes, a rollout's trace stores its turns without their bodies. */
  maxTraceBytes: number;
  /** HTTP mode: where it listens, who may use it, and how sessions end. */
  http: {
    host: string;
    port: number;
    /** OPENCODE_ENV_TOKEN: when set, every route but /health needs `Authorization: Bearer <token>`. */
    token: string | null;
    /** A session with no call for this long is closed and its sandbox killed. */
    sessionIdleMs: number;
    /** MAX_CONCURRENT_ENVS: live sessions at most (WebSocket, MCP and OpenEnv JSON-RPC together). */
    maxSessions: number;
    /** Largest request body accepted. */
    maxBodyBytes: number;
    /** ENABLE_WEB_INTERFACE: serve the web UI at /web. */
    webInterface: boolean;
  };
  /** How long shutdown waits for in-flight work (cancelled rollouts storing their traces) before exiting anyway. */
  shutdownGraceMs: number;
  logLevel: LogLevel;
}

/** Empty variables count as unset, as shells and .env files often leave them. */
function present(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

function endpointCatalog(env: NodeJS.ProcessEnv, problems: string[]): EndpointCatalog {
  const entries = Object.entries(ENDPOINT_VARIABLES).map(([name, vars]) => {
    let baseUrl = present(env[vars.url]) ?? vars.defaultUrl;
    if (baseUrl !== null) {
      const checked = normalizeBaseUrl(baseUrl);
      if ('problem' in checked) problems.push(`${vars.url}: ${checked.problem}`);
      else baseUrl = checked.url;
    }
    return [
      name,
      { baseUrl, apiKey: present(env[vars.key]) ?? '', model: present(env[vars.model]) ?? vars.defaultModel, urlVariable: vars.url },
    ];
  });
  return Object.fromEntries(entries) as EndpointCatalog;
}

/** Identifies this server process in the metadata of its E2B sandboxes: `gc` finds a dead instance's leftovers by it. */
function serverInstanceId(): string {
  return `${os.hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

/** `auto` is E2B when a key is set, local otherwise; asking for E2B without a key fails here, naming the variable. */
function sandboxBackend(e: z.infer<typeof envSchema>, problems: string[]): { backend: SandboxSettings['backend']; reason: string } {
  if (e.OPENCODE_ENV_SANDBOX === 'local') return { backend: 'local', reason: 'OPENCODE_ENV_SANDBOX=local' };
  if (e.OPENCODE_ENV_SANDBOX === 'e2b') {
    if (!e.E2B_API_KEY) problems.push('OPENCODE_ENV_SANDBOX=e2b needs E2B_API_KEY (your E2B API key); it is not set');
    return { backend: 'e2b', reason: 'OPENCODE_ENV_SANDBOX=e2b' };
  }
  return e.E2B_API_KEY
    ? { backend: 'e2b', reason: 'E2B_API_KEY is set (OPENCODE_ENV_SANDBOX=auto)' }
    : { backend: 'local', reason: 'E2B_API_KEY is not set (OPENCODE_ENV_SANDBOX=auto)' };
}

/** Reads every setting from the environment once, so a typo fails at start-up with the variable's name. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(Object.fromEntries(Object.entries(env).filter(([, value]) => present(value) !== undefined)));
  const problems = parsed.success ? [] : parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
  const endpoints = endpointCatalog(env, problems);
  const selected = parsed.success ? sandboxBackend(parsed.data, problems) : null;
  if (!parsed.success || !selected || problems.length > 0) throw new ConfigError(`invalid environment: ${problems.join('; ')}`);
  const e = parsed.data;
  // The SDK's own variables (E2B_API_URL, E2B_SANDBOX_URL, E2B_DOMAIN, E2B_DEBUG) are left for it to read.
  const e2b: E2bSandboxSettings | null = e.E2B_API_KEY
    ? {
        apiKey: e.E2B_API_KEY,
        template: e.OPENCODE_ENV_E2B_TEMPLATE,
        createPerSecond: e.OPENCODE_ENV_E2B_CREATE_PER_S,
        serverInstanceId: serverInstanceId(),
        defaultLifetimeMs: e.OPENCODE_ENV_E2B_LIFETIME_S * 1000,
      }
    : null;
  return {
    sandbox: {
      backend: selected.backend,
      reason: selected.reason,
      e2b,
      local: {
        isolation: e.OPENCODE_ENV_ISOLATION,
        network: e.OPENCODE_ENV_SANDBOX_NETWORK,
        rootDir: path.resolve(e.OPENCODE_ENV_SANDBOX_DIR ?? os.tmpdir()),
        limits: {
          fileSizeBytes: e.OPENCODE_ENV_LIMIT_FILE_MB * 1024 * 1024,
          cpuSeconds: e.OPENCODE_ENV_LIMIT_CPU_S,
          processes: e.OPENCODE_ENV_LIMIT_PROCESSES,
          memoryBytes: e.OPENCODE_ENV_LIMIT_MEMORY_MB * 1024 * 1024,
          tmpBytes: e.OPENCODE_ENV_LIMIT_TMP_MB * 1024 * 1024,
        },
        pythonExecutable: e.OPENCODE_ENV_PYTHON,
      },
    },
    rollouts: {
      maxConcurrent: e.MAX_CONCURRENT_ENVS,
      warmPool: e.OPENCODE_ENV_WARM_POOL,
      upstreamMaxFailures: e.OPENCODE_ENV_UPSTREAM_MAX_FAILURES,
      maxRequestBytes: Math.round(e.OPENCODE_ENV_MAX_REQUEST_MB * 1024 * 1024),
      endpoints,
      opencodeBinary: e.OPENCODE_ENV_OPENCODE_BIN ? path.resolve(e.OPENCODE_ENV_OPENCODE_BIN) : null,
    },
    dataDir: path.resolve(
      e.OPENCODE_ENV_DATA_DIR ?? path.join(e.XDG_DATA_HOME || path.join(os.homedir(), '.local', 'share'), 'opencode-env'),
    ),
    maxTraceBytes: Math.round(e.OPENCODE_ENV_MAX_TRACE_MB * 1024 * 1024),
    http: {
      host: e.HOST,
      port: e.PORT,
      token: e.OPENCODE_ENV_TOKEN ?? null,
      sessionIdleMs: e.OPENCODE_ENV_SESSION_IDLE_S * 1000,
      maxSessions: e.MAX_CONCURRENT_ENVS,
      maxBodyBytes: Math.round(e.OPENCODE_ENV_HTTP_MAX_BODY_MB * 1024 * 1024),
      webInterface: e.ENABLE_WEB_INTERFACE,
    },
    shutdownGraceMs: e.OPENCODE_ENV_SHUTDOWN_GRACE_S * 1000,
    logLevel: e.OPENCODE_ENV_LOG_LEVEL,
  };
}
