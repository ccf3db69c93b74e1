/**
 * Which OpenAI-compatible endpoint a rollout talks to. Explicit arguments win over the named
 * endpoint's environment variables, which win over its defaults (as in OpenEnv's opencode_env).
 */

export type EndpointName = 'vllm' | 'openai' | 'hf_router';

export interface EndpointRequest {
  endpoint?: EndpointName;
  baseUrl?: string;
  apiKey?: string;
  model?: string;
}

export interface ResolvedEndpoint {
  /** The named endpoint used, or `custom` when only explicit values were given. */
  name: EndpointName | 'custom';
  baseUrl: string;
  /** Empty when the endpoint needs none. Never logged or stored. */
  apiKey: string;
  model: string;
}

interface CatalogEntry {
  urlVar: string;
  keyVar: string;
  modelVar: string;
  defaultUrl: string | null;
  defaultModel: string;
}

const CATALOG: Record<EndpointName, CatalogEntry> = {
  vllm: { urlVar: 'VLLM_URL', keyVar: 'VLLM_API_KEY', modelVar: 'VLLM_MODEL', defaultUrl: null, defaultModel: 'Qwen/Qwen3.5-4B' },
  openai: { urlVar: 'OPENAI_BASE_URL', keyVar: 'OPENAI_API_KEY', modelVar: 'OPENAI_MODEL', defaultUrl: 'https://api.openai.com/v1', defaultModel: 'gpt-4o-mini' },
  hf_router: {
    urlVar: 'HF_ROUTER_BASE_URL',
    keyVar: 'HF_ROUTER_API_KEY',
    modelVar: 'HF_ROUTER_MODEL',
    defaultUrl: 'https://router.huggingface.co/v1',
    defaultModel: 'Qwen/Qwen3-4B-Instruct-2507:nscale',
  },
};

export class EndpointError extends Error {}

function validUrl(value: string, source: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new EndpointError(`${source} is not a valid URL: ${JSON.stringify(value)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new EndpointError(`${source} must be an http(s) URL, got ${url.protocol}`);
  return value.replace(/\/+$/, '');
}

export function resolveEndpoint(request: EndpointRequest, env: NodeJS.ProcessEnv = process.env): ResolvedEndpoint {
  if (!request.endpoint) {
    if (!request.baseUrl || !request.model) {
      throw new EndpointError(
        'no LLM endpoint: pass `endpoint` ("vllm", "openai" or "hf_router", configured by environment variables), ' +
          'or `base_url` and `model` (plus `api_key` if the endpoint needs one)',
      );
    }
    return { name: 'custom', baseUrl: validUrl(request.baseUrl, 'base_url'), apiKey: request.apiKey ?? '', model: request.model };
  }
  const entry = CATALOG[request.endpoint];
  const baseUrl = request.baseUrl ?? env[entry.urlVar] ?? entry.defaultUrl;
  if (!baseUrl) {
    throw new EndpointError(`endpoint "${request.endpoint}" needs a URL: set ${entry.urlVar} in the server's environment or pass base_url`);
  }
  return {
    name: request.endpoint,
    baseUrl: validUrl(baseUrl, request.baseUrl ? 'base_url' : entry.urlVar),
    apiKey: request.apiKey ?? env[entry.keyVar] ?? '',
    model: request.model ?? env[entry.modelVar] ?? entry.defaultModel,
  };
}
