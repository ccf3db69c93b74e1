export interface UpstreamError {
  /** `connection`: no HTTP answer; `http`: an error status; `malformed_stream`: unparseable SSE data; `stream`: cut off mid-response. */
  type: 'connection' | 'http' | 'malformed_stream' | 'stream';
  message: string;
  status?: number;
  /** The start of the upstream's error body. */
  body?: string;
}

export interface AssembledToolCall {
  id: string | null;
  name: string;
  arguments: string;
}

/** What the upstream answered, rebuilt from its stream: the agent's view plus the token-level data. */
export interface AssembledCompletion {
  response: {
    content: string;
    reasoning: string;
    tool_calls: AssembledToolCall[];
  };
  finish_reason: string | null;
  usage: Record<string, unknown> | null;
  /** Sampled tokens as text, from the logprobs. */
  completion_tokens: string[];
  completion_token_ids: number[];
  per_token_logps: number[];
  top_logprobs: Array<Array<{ token: string; logprob: number }>>;
  prompt_token_ids: number[] | null;
  n_chunks: number;
}

/** One LLM call as the recording proxy saw it. The Authorization header is never recorded. */
export interface ProxyTurn extends AssembledCompletion {
  turn: number;
  timestamp: string;
  method: string;
  path: string;
  /** `agent` (a step with tools), `title` (opencode's session-title request) or `auxiliary`. */
  kind: 'agent' | 'title' | 'auxiliary';
  session_id: string | null;
  stream: boolean;
  /** The request body as sent upstream (after injection). */
  request: Record<string, unknown> | null;
  /** Which fields the proxy added to the request (and removed again from what the agent saw). */
  injected: string[];
  latency_s: number;
  ttfb_s: number | null;
  upstream_status: number | null;
  upstream_error: UpstreamError | null;
}

/**
 * The per-turn summary a rollout result carries. The request, the response text, the alternatives per
 * token and the prompt's token ids (tens of thousands per turn) stay in the trace.
 */
export type ProxyTurnSummary = Omit<ProxyTurn, 'request' | 'response' | 'top_logprobs' | 'prompt_token_ids' | 'method' | 'path' | 'n_chunks'>;

export function summarizeTurn(turn: ProxyTurn): ProxyTurnSummary {
  const { request: _request, response: _response, top_logprobs: _top, prompt_token_ids: _prompt, method: _method, path: _path, n_chunks: _chunks, ...summary } = turn;
  return summary;
}
