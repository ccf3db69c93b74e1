import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';

/** Where sandbox processes may connect: `isolated` gives each command its own empty network namespace. */
export type SandboxNetwork = 'isolated' | 'host';
/** `auto` uses bubblewrap when it works on this machine; `bwrap` insists on it; `none` runs plain child processes. */
export type IsolationMode = 'auto' | 'bwrap' | 'none';

const envSchema = z.object({
  OPENCODE_ENV_SANDBOX: z.enum(['local']).default('local'),
  OPENCODE_ENV_ISOLATION: z.enum(['auto', 'bwrap', 'none']).default('auto'),
  OPENCODE_ENV_SANDBOX_NETWORK: z.enum(['isolated', 'host']).default('isolated'),
  OPENCODE_ENV_SANDBOX_DIR: z.string().min(1).optional(),
  OPENCODE_ENV_PYTHON: z.string().min(1).default('python3'),
  OPENCODE_ENV_LIMIT_FILE_MB: z.coerce.number().int().positive().default(1024),
  OPENCODE_ENV_LIMIT_CPU_S: z.coerce.number().int().positive().default(3600),
  OPENCODE_ENV_LIMIT_PROCESSES: z.coerce.number().int().positive().default(4096),
  OPENCODE_ENV_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  OPENCODE_ENV_DATA_DIR: z.string().min(1).optional(),
  MAX_CONCURRENT_ENVS: z.coerce.number().int().positive().max(256).default(4),
  OPENCODE_ENV_UPSTREAM_MAX_FAILURES: z.coerce.number().int().positive().default(3),
  XDG_DATA_HOME: z.string().optional(),
});

export interface Config {
  sandbox: {
    backend: 'local';
    isolation: IsolationMode;
    network: SandboxNetwork;
    /** Host directory under which each local sandbox gets its own folder. */
    rootDir: string;
    limits: { fileSizeBytes: number; cpuSeconds: number; processes: number };
  };
  python: { executable: string };
  rollouts: {
    /** How many rollouts may run at once; more wait their turn. */
    maxConcurrent: number;
    /** Upstream failures in a row after which a rollout's proxy gives up. */
    upstreamMaxFailures: number;
  };
  /** Where traces are stored. */
  dataDir: string;
  logLevel: z.infer<typeof envSchema>['OPENCODE_ENV_LOG_LEVEL'];
}

export class ConfigError extends Error {}

/** Reads every setting from the environment once, so a typo fails at start-up with the variable's name. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(`invalid environment: ${problems.join('; ')}`);
  }
  const e = parsed.data;
  return {
    sandbox: {
      backend: e.OPENCODE_ENV_SANDBOX,
      isolation: e.OPENCODE_ENV_ISOLATION,
      network: e.OPENCODE_ENV_SANDBOX_NETWORK,
      rootDir: path.resolve(e.OPENCODE_ENV_SANDBOX_DIR ?? os.tmpdir()),
      limits: {
        fileSizeBytes: e.OPENCODE_ENV_LIMIT_FILE_MB * 1024 * 1024,
        cpuSeconds: e.OPENCODE_ENV_LIMIT_CPU_S,
        processes: e.OPENCODE_ENV_LIMIT_PROCESSES,
      },
    },
    python: { executable: e.OPENCODE_ENV_PYTHON },
    rollouts: { maxConcurrent: e.MAX_CONCURRENT_ENVS, upstreamMaxFailures: e.OPENCODE_ENV_UPSTREAM_MAX_FAILURES },
    dataDir: path.resolve(e.OPENCODE_ENV_DATA_DIR ?? path.join(e.XDG_DATA_HOME || path.join(os.homedir(), '.local', 'share'), 'opencode-env')),
    logLevel: e.OPENCODE_ENV_LOG_LEVEL,
  };
}
