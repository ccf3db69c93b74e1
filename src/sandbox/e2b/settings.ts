/**
 * Settings of the E2B backend. Endpoint overrides are only what the caller passes: the SDK reads its own
 * environment variables (E2B_API_URL, E2B_SANDBOX_URL, E2B_DOMAIN, E2B_DEBUG) itself, and we never override them.
 */
export interface E2bSandboxSettings {
  apiKey: string;
  /** Template sandboxes start from when the create options name none. */
  template: string;
  /** Sandbox creations per second, at most (E2B's entry plan allows 1/s; a burst waits its turn). */
  createPerSecond: number;
  /** Identifies this server process in every sandbox's metadata, so that a later `gc` can find orphans. */
  serverInstanceId: string;
  /**
   * Lifetime of a sandbox created without `lifetimeMs`. E2B has no "until killed": without a timeout the
   * server applies its default of 5 minutes; the maximum is 1 h (Hobby) or 24 h (Pro).
   */
  defaultLifetimeMs?: number;
  domain?: string;
  apiUrl?: string;
  sandboxUrl?: string;
}

/** The template `opencode-env template build` builds, and sandboxes start from unless told otherwise. */
export const DEFAULT_E2B_TEMPLATE = 'opencode-env';
export const DEFAULT_E2B_LIFETIME_MS = 60 * 60 * 1000;
/** The `app` metadata tag every sandbox of this project carries. */
export const E2B_APP_TAG = 'opencode-env';
