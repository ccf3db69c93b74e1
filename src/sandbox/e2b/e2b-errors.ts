import { AuthenticationError, NotEnoughSpaceError, RateLimitError, SandboxNotFoundError, ServiceBusyError, TimeoutError } from 'e2b';
import { SandboxError } from '../../errors.js';
import { RetriesExhaustedError } from './retry.js';

/** Which kind of call failed: the advice differs (a 404 on create is a template, a 429 on create is the creation rate). */
export type E2bStep = 'create' | 'file' | 'command';

export type E2bFailureKind =
  'auth' | 'rate_limit' | 'quota' | 'no_space' | 'sandbox_ended' | 'network' | 'busy' | 'template_not_found' | 'forbidden' | 'other';

export interface E2bErrorContext {
  step: E2bStep;
  /** What we were doing, as a phrase: "create a sandbox", "write /home/user/workdir/a.py". */
  what: string;
  sandboxId?: string;
  template?: string;
  /** This server had already killed the sandbox (so a broken call is expected, not E2B's doing). */
  killedByUs?: boolean;
}

/** Node's codes for a connection that could not be made or was cut. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
]);
/** How the SDK words a request that never got an answer (undici's `fetch failed`, a cut stream's `terminated`). */
const NETWORK_MESSAGE = /fetch failed|\bterminated\b|socket|ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|network error|other side closed/i;
/** The SDK's wording when envd or E2B's proxy says the sandbox is not there (502, or killed while in flight). */
const ENDED_MESSAGE = /end of life|sandbox timeout|not running anymore|sandbox was not found|sandbox .* not found/i;
/** E2B answers a reached concurrency limit or an exhausted team with a 429 or 403 that says so. */
const QUOTA_MESSAGE = /concurren|maximum number|quota|credit|blocked|limit of \d+/i;

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function statusOf(error: unknown): number | undefined {
  const status = (error as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

/** A failure to reach E2B's API or the sandbox's envd at all: nothing answered. */
function isNetworkFailure(error: unknown): boolean {
  for (let cause: unknown = error, depth = 0; cause && depth < 5; cause = (cause as { cause?: unknown }).cause, depth++) {
    const code = (cause as { code?: unknown }).code;
    if (typeof code === 'string' && (NETWORK_CODES.has(code) || code.startsWith('UND_ERR_'))) return true;
  }
  return NETWORK_MESSAGE.test(messageOf(error));
}

/** What went wrong, from whatever the SDK threw (a RetriesExhaustedError is judged by its last attempt). */
export function classifyE2bError(error: unknown, step: E2bStep): E2bFailureKind {
  if (error instanceof RetriesExhaustedError) return classifyE2bError(error.cause, step);
  const message = messageOf(error);
  const status = statusOf(error);
  if (error instanceof AuthenticationError || status === 401) return 'auth';
  if ((error instanceof RateLimitError || status === 429 || status === 403) && QUOTA_MESSAGE.test(message)) return 'quota';
  if (error instanceof RateLimitError || status === 429) return 'rate_limit';
  if (status === 403) return 'forbidden';
  if (error instanceof NotEnoughSpaceError || status === 507) return 'no_space';
  if (error instanceof ServiceBusyError || status === 503) return 'busy';
  if (step === 'create' && status === 404) return 'template_not_found';
  if (error instanceof SandboxNotFoundError) return 'sandbox_ended';
  if (error instanceof TimeoutError && ENDED_MESSAGE.test(message)) return 'sandbox_ended';
  if (isNetworkFailure(error)) return 'network';
  return 'other';
}

/**
 * Worth another attempt of an idempotent step: the service was busy, rate-limited or unreachable. Not a 429 on
 * create, which the SDK has already retried after the server's Retry-After (see provider.ts), nor a reached quota.
 */
export function isTransientE2bError(error: unknown, step: E2bStep): boolean {
  const kind = classifyE2bError(error, step);
  return kind === 'busy' || kind === 'network' || (kind === 'rate_limit' && step !== 'create');
}

function advice(kind: E2bFailureKind, context: E2bErrorContext): string {
  const sandbox = context.sandboxId ? `sandbox ${context.sandboxId}` : 'the sandbox';
  switch (kind) {
    case 'auth':
      return 'E2B rejected the API key (401): check E2B_API_KEY (a key from https://e2b.dev/dashboard?tab=keys, starting with e2b_)';
    case 'quota':
      return (
        "E2B's limit of concurrent sandboxes or the team's quota is reached: set MAX_CONCURRENT_ENVS below your plan's limit " +
        '(Hobby 20, Pro 100), kill leftover sandboxes, or check the team in the E2B dashboard'
      );
    case 'rate_limit':
      return context.step === 'create'
        ? "E2B's rate limit refused the creation (429), also after waiting the Retry-After it asked for: lower " +
            'OPENCODE_ENV_E2B_CREATE_PER_S (E2B allows 1 creation/s on Hobby, 5/s on Pro) or run fewer rollouts at once'
        : "E2B's rate limit on sandbox operations was hit (429): run fewer rollouts at once and try again";
    case 'forbidden':
      return 'E2B refused the request (403): check that the team of E2B_API_KEY is active and has credit (E2B dashboard)';
    case 'no_space':
      return `${sandbox} has no disk space left (507): write less, or use a template with a larger disk`;
    case 'busy':
      return 'E2B is temporarily unavailable (503): try again in a minute';
    case 'template_not_found':
      return (
        `E2B has no template ${JSON.stringify(context.template ?? '?')} (404): build it (opencode-env template build), or name ` +
        "another in the rollout's `template` argument or OPENCODE_ENV_E2B_TEMPLATE"
      );
    case 'sandbox_ended':
      return context.killedByUs
        ? `${sandbox} has been killed`
        : `${sandbox} ended (E2B killed it or it is gone, e.g. its lifetime passed): start a new episode (reset) and, for long work, give it a longer lifetime`;
    case 'network':
      return context.step === 'create'
        ? "could not reach E2B's API: check the network, any proxy, and E2B_DOMAIN or E2B_API_URL if set"
        : `could not reach ${sandbox} (envd): check the network and any proxy; the sandbox may also have ended`;
    case 'other':
      return context.killedByUs ? `${sandbox} has been killed` : `E2B failed`;
  }
}

/**
 * The one translation of an SDK error into this project's SandboxError: it names what we were doing, what
 * happened and what to do, keeps the SDK's own message for diagnosis and the original error as its cause.
 */
export function sandboxErrorFromE2b(error: unknown, context: E2bErrorContext): SandboxError {
  if (error instanceof SandboxError) return error;
  const last = error instanceof RetriesExhaustedError ? error.cause : error;
  const attempts = error instanceof RetriesExhaustedError ? ` after ${error.attempts} attempts` : '';
  const kind = classifyE2bError(last, context.step);
  const detail = last instanceof Error ? `${last.name}: ${last.message}` : String(last);
  const sdkDetail = detail.length > 300 ? `${detail.slice(0, 300)}…` : detail;
  const where = context.sandboxId && context.step !== 'create' ? ` in sandbox ${context.sandboxId}` : '';
  return new SandboxError(`could not ${context.what}${where}${attempts}: ${advice(kind, context)} [${sdkDetail}]`, { cause: last });
}
