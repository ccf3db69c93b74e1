import { E2B } from 'e2b';
import { SandboxError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Sandbox, SandboxCreateOptions, SandboxProvider } from '../types.js';
import { CreateLimiter } from './create-limiter.js';
import { E2bSandbox } from './e2b-sandbox.js';
import { DEFAULT_E2B_LIFETIME_MS, E2B_APP_TAG, type E2bSandboxSettings } from './settings.js';

export interface E2bProviderOptions {
  settings: E2bSandboxSettings;
  /** The project's resources/ directory, uploaded into sandboxes on first use. */
  resourcesDir: string;
  logger: Logger;
}

/** Sandboxes in E2B's cloud, created through the SDK with explicit options (never by changing its environment). */
export class E2bSandboxProvider implements SandboxProvider {
  readonly backend = 'e2b' as const;
  private readonly client: E2B;
  private readonly limiter: CreateLimiter;
  private readonly live = new Set<E2bSandbox>();

  constructor(
    private readonly options: E2bProviderOptions,
    limiter?: CreateLimiter,
  ) {
    const { apiKey, domain, apiUrl, sandboxUrl } = options.settings;
    // Only what the caller set: anything left out, the SDK takes from its own E2B_* variables.
    this.client = new E2B({ apiKey, ...(domain ? { domain } : {}), ...(apiUrl ? { apiUrl } : {}), ...(sandboxUrl ? { sandboxUrl } : {}) });
    this.limiter = limiter ?? new CreateLimiter(options.settings.createPerSecond);
  }

  async isolation(): Promise<string> {
    return 'e2b-microvm';
  }

  async create(options: SandboxCreateOptions = {}): Promise<Sandbox> {
    const { settings, logger } = this.options;
    const template = options.template ?? settings.template;
    const lifetimeMs = options.lifetimeMs ?? settings.defaultLifetimeMs ?? DEFAULT_E2B_LIFETIME_MS;
    const metadata = {
      ...options.metadata,
      app: E2B_APP_TAG,
      serverInstance: settings.serverInstanceId,
      ...(options.label ? { label: options.label } : {}),
    };
    await this.limiter.acquire();
    const startedAt = performance.now();
    let sdk;
    try {
      sdk = await this.client.Sandbox.create(template, { metadata, envs: options.env ?? {}, timeoutMs: lifetimeMs });
    } catch (error) {
      throw new SandboxError(`could not create an E2B sandbox from template ${template}: ${describe(error)}`, { cause: error });
    }
    const sandbox = new E2bSandbox({
      sdk,
      lifetimeMs,
      resourcesDir: this.options.resourcesDir,
      onKilled: (s) => this.live.delete(s),
      logger,
    });
    this.live.add(sandbox);
    try {
      await sdk.files.makeDir(sandbox.workdir);
    } catch (error) {
      await sandbox.kill();
      throw new SandboxError(`could not create the workdir of E2B sandbox ${sandbox.id}: ${describe(error)}`, { cause: error });
    }
    logger.debug({ sandbox: sandbox.id, template, lifetimeMs, metadata, ms: Math.round(performance.now() - startedAt) }, 'sandbox created');
    return sandbox;
  }

  async killAll(): Promise<void> {
    await Promise.allSettled([...this.live].map((s) => s.kill()));
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
