import os from 'node:os';
import { E2B } from 'e2b';
import type { Logger } from '../../log.js';
import type { Sandbox, SandboxCreateOptions, SandboxProvider } from '../types.js';
import { CreateLimiter } from './create-limiter.js';
import { isTransientE2bError, sandboxErrorFromE2b } from './e2b-errors.js';
import { E2bSandbox } from './e2b-sandbox.js';
import { removeInstanceRecord, writeInstanceRecord } from './instances.js';
import { withRetries, type RetryPolicy } from './retry.js';
import { DEFAULT_E2B_LIFETIME_MS, E2B_APP_TAG, type E2bSandboxSettings } from './settings.js';

/**
 * The SDK's own retries of a control-plane 429, which we keep (explicitly, at its default): it alone sees the
 * Retry-After header (its RateLimitError carries none), so it alone can wait what E2B asks. It sends a create at most
 * 1 + 3 times and only while the waits fit in its request timeout (60 s). Our retries (retry.ts) add what it does not
 * cover (503, network failures) and never retry its RateLimitError again, so attempts do not multiply.
 */
const SDK_RATE_LIMIT_RETRIES = 3;

export interface E2bProviderOptions {
  settings: E2bSandboxSettings;
  /** The project's resources/ directory, uploaded into sandboxes on first use. */
  resourcesDir: string;
  /** The opencode-ai version to install in a sandbox whose template lacks opencode. */
  opencodeVersion?: string;
  logger: Logger;
  /** Retries of creation and file transfers; E2B_RETRY_POLICY by default (tests make the waits short). */
  retryPolicy?: RetryPolicy;
  /** Where this server instance records that it is alive, for `gc` (`<dataDir>/e2b-instances`); none: not recorded. */
  instancesDir?: string;
}

/** The SDK's client for these settings: only what the caller set; anything left out, the SDK takes from its own E2B_* variables. */
export function createE2bClient(settings: E2bSandboxSettings): E2B {
  const { apiKey, domain, apiUrl, sandboxUrl } = settings;
  return new E2B({
    apiKey,
    retries: SDK_RATE_LIMIT_RETRIES,
    ...(domain ? { domain } : {}),
    ...(apiUrl ? { apiUrl } : {}),
    ...(sandboxUrl ? { sandboxUrl } : {}),
  });
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
    this.client = createE2bClient(options.settings);
    this.limiter = limiter ?? new CreateLimiter(options.settings.createPerSecond);
    if (options.instancesDir) this.recordInstance(options.instancesDir);
  }

  /** Without the record, `gc` on this host counts this instance as gone and would kill its sandboxes: say so loudly. */
  private recordInstance(dir: string): void {
    const instanceId = this.options.settings.serverInstanceId;
    try {
      writeInstanceRecord(dir, { instanceId, pid: process.pid, startedAt: new Date().toISOString() });
    } catch (error) {
      this.options.logger.warn(
        { dir, error },
        'could not record this server instance; `opencode-env gc` would take its sandboxes for orphans',
      );
    }
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
      // What `gc` judges by: an instance on its own host is alive while its pid runs and its record is there.
      serverHost: os.hostname(),
      serverPid: String(process.pid),
      ...(options.label ? { label: options.label } : {}),
    };
    const startedAt = performance.now();
    let sdk;
    try {
      // Idempotent until it succeeds: a refused or unanswered create made no sandbox (one made but unanswered would
      // still be tagged with this server instance and end at its lifetime). Every attempt waits its turn in the limiter.
      sdk = await withRetries(
        async () => {
          await this.limiter.acquire();
          return this.client.Sandbox.create(template, {
            metadata,
            envs: options.env ?? {},
            timeoutMs: lifetimeMs,
            allowInternetAccess: options.allowInternet ?? true,
          });
        },
        {
          isRetryable: (error) => isTransientE2bError(error, 'create'),
          onRetry: (error, attempt, delayMs) => logger.warn({ template, attempt, delayMs, error }, 'E2B sandbox creation failed; retrying'),
          ...(this.options.retryPolicy ? { policy: this.options.retryPolicy } : {}),
        },
      );
    } catch (error) {
      throw sandboxErrorFromE2b(error, { step: 'create', what: `create an E2B sandbox from template ${template}`, template });
    }
    const sandbox = new E2bSandbox({
      sdk,
      template,
      workdir: options.workdir,
      opencodeVersion: this.options.opencodeVersion,
      lifetimeMs,
      resourcesDir: this.options.resourcesDir,
      onKilled: (s) => this.live.delete(s),
      logger,
      ...(this.options.retryPolicy ? { retryPolicy: this.options.retryPolicy } : {}),
    });
    this.live.add(sandbox);
    try {
      if (options.workdir === undefined) await sandbox.makeDir(sandbox.workdir);
      else await sandbox.prepareWorkdir();
    } catch (error) {
      await sandbox.kill();
      throw error;
    }
    logger.debug({ sandbox: sandbox.id, template, lifetimeMs, metadata, ms: Math.round(performance.now() - startedAt) }, 'sandbox created');
    return sandbox;
  }

  async killAll(): Promise<void> {
    await Promise.allSettled([...this.live].map((s) => s.kill()));
    // At shutdown: from now on this instance is gone, and anything it left behind is gc's.
    if (this.options.instancesDir) removeInstanceRecord(this.options.instancesDir, this.options.settings.serverInstanceId);
  }
}
