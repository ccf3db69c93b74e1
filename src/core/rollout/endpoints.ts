import { InvalidInputError } from '../../errors.js';

/**
 * Which OpenAI-compatible endpoint a rollout talks to. Explicit arguments win over the named endpoint's
 * settings (read from the environment at start-up), which win over its defaults (as in OpenEnv's opencode_env).
 * A configured key is bound to its configured URL: a caller who names another URL gets only its own key.
 */

export const ENDPOINT_NAMES = ['vllm', 'openai', 'hf_router'] as const;
export type EndpointName = (typeof ENDPOINT_NAMES)[number];

/** A named endpoint as configured on the server. */
interface EndpointSettings {
  /** null when the endpoint has no default and none was configured. */
  baseUrl: string | null;
  /** Empty when none is configured. Never logged or stored. */
  apiKey: string;
  model: string;
  /** The environment variable that sets the URL, for error messages. */
  urlVariable: string;
}

export type EndpointCatalog = Record<EndpointName, EndpointSettings>;

export interface EndpointRequest {
  endpoint?: EndpointName | undefined;
  baseUrl?: string | undefined;
  apiKey?: string | undefined;
  model?: string | undefined;
}

export interface ResolvedEndpoint {
  /** The named endpoint used, or `custom` when only explicit values were given. */
  name: EndpointName | 'custom';
  baseUrl: string;
  /** Empty when the endpoint needs none. Never logged or stored. */
  apiKey: string;
  model: string;
}

/** Checks an http(s) URL and drops trailing slashes; returns the problem instead when it is not one. */
export function normalizeBaseUrl(value: string): { url: string } | { problem: string } {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return { problem: `is not a valid URL: ${JSON.stringify(value)}` };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return { problem: `must be an http(s) URL, got ${url.protocol}` };
  return { url: value.replace(/\/+$/, '') };
}

function validUrl(value: string, source: string): string {
  const checked = normalizeBaseUrl(value);
  if ('problem' in checked) throw new InvalidInputError(`${source} ${checked.problem}`);
  return checked.url;
}

const SECRET_QUERY_NAME = /key|token|secret|sig|pass|auth|cred|session/i;

/** The parts of a URL that carry credentials: user info and the values of query parameters named like secrets. */
export function urlCredentials(value: string): string[] {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return [];
  }
  const found = [decodeURIComponent(url.username), decodeURIComponent(url.password), url.username, url.password];
  for (const [name, paramValue] of url.searchParams)
    if (SECRET_QUERY_NAME.test(name)) found.push(paramValue, encodeURIComponent(paramValue));
  return [...new Set(found.filter(Boolean))];
}

/** The URL with its credentials replaced, fit to store, log or return. */
export function redactUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return value;
  }
  if (url.username || url.password) {
    url.username = 'redacted';
    url.password = '';
  }
  for (const name of [...url.searchParams.keys()]) if (SECRET_QUERY_NAME.test(name)) url.searchParams.set(name, 'redacted');
  return url.href.replace(/\/+$/, '');
}

export function resolveEndpoint(request: EndpointRequest, catalog: EndpointCatalog): ResolvedEndpoint {
  if (!request.endpoint) {
    if (!request.baseUrl || !request.model) {
      throw new InvalidInputError(
        'no LLM endpoint: pass `endpoint` ("vllm", "openai" or "hf_router", configured by environment variables), ' +
          'or `base_url` and `model` (plus `api_key` if the endpoint needs one)',
      );
    }
    return { name: 'custom', baseUrl: validUrl(request.baseUrl, 'base_url'), apiKey: request.apiKey ?? '', model: request.model };
  }
  const settings = catalog[request.endpoint];
  const baseUrl = request.baseUrl ?? settings.baseUrl;
  if (!baseUrl) {
    throw new InvalidInputError(
      `endpoint "${request.endpoint}" needs a URL: set ${settings.urlVariable} in the server's environment or pass base_url`,
    );
  }
  const resolvedUrl = request.baseUrl ? validUrl(request.baseUrl, 'base_url') : baseUrl;
  // The server's key goes only where the server's operator pointed it, never to a URL a caller chose.
  const ownUrl = settings.baseUrl !== null && resolvedUrl === settings.baseUrl;
  return {
    name: request.endpoint,
    baseUrl: resolvedUrl,
    apiKey: request.apiKey ?? (ownUrl ? settings.apiKey : ''),
    model: request.model ?? settings.model,
  };
}
