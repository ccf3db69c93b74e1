/**
 * One error taxonomy for the whole server, in the e2b SDK's style: a base class that sets `name`, and a
 * subclass per way of failing that a caller handles differently. Transports map these to their wire
 * format in one place each (see `classifyError`).
 */

/** Base of every error this project throws on purpose. */
export class OpencodeEnvError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The caller's fault: a bad argument, an unusable endpoint, a path outside the workdir. Nothing was run. */
export class InvalidInputError extends OpencodeEnvError {}

/** A setting in the environment is invalid: the server refuses to start. */
export class ConfigError extends OpencodeEnvError {}

/**
 * Why a rollout could not produce a trustworthy reward, as trainers filter on it:
 * - `cancelled`: the caller cancelled the call (or the server is shutting down);
 * - `upstream`: the LLM endpoint failed, was unreachable, or never answered successfully;
 * - `setup`: a setup command failed or timed out;
 * - `verifier`: the verifier timed out or left an unusable reward file;
 * - `sandbox`: the sandbox or the agent's process could not be created or started;
 * - `internal`: a bug or an unexpected failure in this server (including a trace that could not be stored).
 */
export const INFRASTRUCTURE_ERROR_KINDS = ['cancelled', 'upstream', 'setup', 'verifier', 'sandbox', 'internal'] as const;
export type InfrastructureErrorKind = (typeof INFRASTRUCTURE_ERROR_KINDS)[number];

/** Something outside the agent's control failed: a rollout gets `reward: null`, this message and its kind. */
export class InfrastructureError extends OpencodeEnvError {
  constructor(
    readonly kind: InfrastructureErrorKind,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** A sandbox operation failed: the sandbox is gone, a path is outside it, or a program it needs cannot start. */
export class SandboxError extends OpencodeEnvError {}

/** A file a sandbox was asked to read is not there. `code` is Node's, so callers treat every backend alike. */
export class SandboxFileNotFoundError extends SandboxError {
  readonly code = 'ENOENT';
}

/** How a transport should report an error: the caller's fault, a failure it may retry, or a bug. */
type ErrorClass = 'invalid_input' | 'infrastructure' | 'sandbox' | 'internal';

export interface ClassifiedError {
  class: ErrorClass;
  /** Set for infrastructure failures. */
  kind: InfrastructureErrorKind | null;
  message: string;
}

export function classifyError(error: unknown): ClassifiedError {
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof InvalidInputError) return { class: 'invalid_input', kind: null, message };
  if (error instanceof InfrastructureError) return { class: 'infrastructure', kind: error.kind, message };
  if (error instanceof SandboxError) return { class: 'sandbox', kind: null, message };
  return { class: 'internal', kind: null, message: `internal error: ${message}` };
}
