/**
 * What the recording proxy adds to a chat request so the upstream returns what a trainer needs, and how
 * it removes that again from the answer, so the agent sees exactly what it would have seen without it.
 */

/** Fields added for the recording; one the upstream refuses by name (HTTP 400) is dropped for the rest of the run. */
export type Injection = 'return_token_ids' | 'logprobs';

export interface InjectionPolicy {
  /** Ask for token ids (vLLM's `return_token_ids`). */
  requestTokenIds: boolean;
  /** top_logprobs to request with logprobs; 0 asks for the chosen tokens' logprobs only. */
  topLogprobs: number;
  /** Set `chat_template_kwargs.enable_thinking = false`. */
  disableThinking: boolean;
  /** Upper bound for `max_tokens` / `max_completion_tokens`; also the value set when the agent sent neither. */
  maxTokensCap: number | null;
}

export interface InjectedRequest {
  body: Record<string, any>;
  /** Injections whose answers must be stripped before the agent sees them. */
  injected: Injection[];
  /** Other changes, recorded but needing no stripping. */
  extras: string[];
}

export function injectFields(original: Record<string, any>, policy: InjectionPolicy, refused: ReadonlySet<Injection>): InjectedRequest {
  const body: Record<string, any> = { ...original };
  const injected: Injection[] = [];
  const extras: string[] = [];
  if (policy.requestTokenIds && body.return_token_ids === undefined && !refused.has('return_token_ids')) {
    body.return_token_ids = true;
    injected.push('return_token_ids');
  }
  if (body.logprobs === undefined && !refused.has('logprobs')) {
    body.logprobs = true;
    if (policy.topLogprobs > 0) body.top_logprobs = policy.topLogprobs;
    injected.push('logprobs');
  }
  if (policy.disableThinking) {
    body.chat_template_kwargs = { ...(body.chat_template_kwargs ?? {}), enable_thinking: false };
    extras.push('chat_template_kwargs.enable_thinking');
  }
  if (policy.maxTokensCap !== null) {
    for (const field of ['max_tokens', 'max_completion_tokens']) {
      if (typeof body[field] === 'number' && body[field] > policy.maxTokensCap) {
        body[field] = policy.maxTokensCap;
        extras.push(field);
      }
    }
    if (body.max_tokens === undefined && body.max_completion_tokens === undefined) {
      body.max_tokens = policy.maxTokensCap;
      extras.push('max_tokens');
    }
  }
  return { body, injected, extras };
}

/** Removes from a response body or stream chunk what the agent did not ask for. Mutates and returns `payload`. */
export function stripInjected(payload: any, injected: readonly Injection[]): any {
  if (injected.length === 0 || !payload || typeof payload !== 'object') return payload;
  if (injected.includes('return_token_ids')) delete payload.prompt_token_ids;
  for (const choice of Array.isArray(payload.choices) ? payload.choices : []) {
    if (choice === null || typeof choice !== 'object') continue; // an upstream's oddity must not crash the proxy
    if (injected.includes('return_token_ids')) delete choice.token_ids;
    if (injected.includes('logprobs')) delete choice.logprobs;
  }
  return payload;
}

/** The injection a 400 answer complains about by name, if any: any other 400 is the agent's to see. */
export function refusedInjection(errorBody: string, injected: readonly Injection[]): Injection | undefined {
  return injected.find((field) => errorBody.includes(field));
}
