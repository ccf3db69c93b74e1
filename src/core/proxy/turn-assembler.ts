import type { AssembledCompletion, AssembledToolCall } from './types.js';

/**
 * Rebuilds one chat completion from what the upstream sent (stream chunks or a whole response):
 * the text, reasoning and tool calls the agent saw, plus the token-level data trainers need.
 */

interface LogprobEntry {
  token?: unknown;
  logprob?: unknown;
  top_logprobs?: unknown;
}

/** vLLM started with `--return-tokens-as-token-ids` names each sampled token `token_id:<id>` in its logprobs. */
const TOKEN_ID_TOKEN = /^token_id:(\d+)$/;

/** The id a logprob token spells out, or null when it is ordinary text. */
export function tokenIdFromLogprobToken(token: string): number | null {
  const match = TOKEN_ID_TOKEN.exec(token);
  return match ? Number(match[1]) : null;
}

const logprobOrNull = (value: unknown): number | null => (typeof value === 'number' && Number.isFinite(value) ? value : null);

export class TurnAssembler {
  private content = '';
  private reasoning = '';
  private readonly result: AssembledCompletion = {
    response: { content: '', reasoning: '', tool_calls: [] },
    finish_reason: null,
    usage: null,
    completion_tokens: [],
    completion_token_ids: [],
    per_token_logps: [],
    top_logprobs: [],
    prompt_token_ids: null,
    n_chunks: 0,
  };
  private readonly toolCallsByIndex = new Map<number, AssembledToolCall>();
  /** Ids spelled out by the logprob tokens; null once a token was ordinary text. */
  private idsFromLogprobTokens: number[] | null = [];

  private addLogprobs(logprobs: { content?: unknown } | null | undefined): void {
    // Shapes are checked, not trusted: an upstream's oddity (a null entry, a number for a list) must not crash the proxy.
    const content: unknown = logprobs && typeof logprobs === 'object' ? logprobs.content : null;
    for (const item of Array.isArray(content) ? content : []) {
      const entry: LogprobEntry = item && typeof item === 'object' ? (item as LogprobEntry) : {};
      const token = typeof entry.token === 'string' ? entry.token : '';
      this.result.completion_tokens.push(token);
      this.result.per_token_logps.push(logprobOrNull(entry.logprob));
      if (this.idsFromLogprobTokens) {
        const id = tokenIdFromLogprobToken(token);
        if (id === null) this.idsFromLogprobTokens = null;
        else this.idsFromLogprobTokens.push(id);
      }
      if (Array.isArray(entry.top_logprobs) && entry.top_logprobs.length > 0) {
        this.result.top_logprobs.push(
          entry.top_logprobs.map((t: unknown) => {
            const alternative = (t && typeof t === 'object' ? t : {}) as { token?: unknown; logprob?: unknown };
            return { token: typeof alternative.token === 'string' ? alternative.token : '', logprob: logprobOrNull(alternative.logprob) };
          }),
        );
      }
    }
  }

  private addCommon(payload: any, choice: any): void {
    if (Array.isArray(payload.prompt_token_ids) && this.result.prompt_token_ids === null)
      this.result.prompt_token_ids = payload.prompt_token_ids;
    if (payload.usage) this.result.usage = payload.usage;
    if (!choice) return;
    // A loop, not a spread: a spread of a few hundred thousand ids overflows the call stack.
    if (Array.isArray(choice.token_ids)) for (const id of choice.token_ids) this.result.completion_token_ids.push(id);
    this.addLogprobs(choice.logprobs);
    if (choice.finish_reason) this.result.finish_reason = choice.finish_reason;
  }

  /** One parsed `data:` payload of a streamed response. */
  addChunk(payload: any): void {
    this.result.n_chunks += 1;
    // `data: null` or a bare number parses, but carries nothing: an upstream's oddity must not crash the proxy.
    if (!payload || typeof payload !== 'object') return;
    const choice = Array.isArray(payload?.choices) ? payload.choices[0] : undefined;
    this.addCommon(payload, choice);
    const delta = choice?.delta;
    if (!delta) return;
    if (typeof delta.content === 'string') this.content += delta.content;
    const reasoning = delta.reasoning_content ?? delta.reasoning;
    if (typeof reasoning === 'string') this.reasoning += reasoning;
    for (const call of Array.isArray(delta.tool_calls) ? delta.tool_calls : []) {
      if (!call || typeof call !== 'object') continue;
      const index = typeof call.index === 'number' ? call.index : this.toolCallsByIndex.size;
      let assembled = this.toolCallsByIndex.get(index);
      if (!assembled) {
        assembled = { id: null, name: '', arguments: '' };
        this.toolCallsByIndex.set(index, assembled);
      }
      if (call.id) assembled.id = call.id;
      if (call.function?.name) assembled.name += call.function.name;
      if (typeof call.function?.arguments === 'string') assembled.arguments += call.function.arguments;
    }
  }

  /** A whole (non-streamed) response body. */
  addResponse(payload: any): void {
    if (!payload || typeof payload !== 'object') return;
    this.result.n_chunks = 1;
    const choice = Array.isArray(payload?.choices) ? payload.choices[0] : undefined;
    this.addCommon(payload, choice);
    const message = choice?.message ?? {};
    if (typeof message.content === 'string') this.content = message.content;
    const reasoning = message.reasoning_content ?? message.reasoning;
    if (typeof reasoning === 'string') this.reasoning = reasoning;
    for (const call of Array.isArray(message.tool_calls) ? message.tool_calls : []) {
      if (!call || typeof call !== 'object') continue;
      this.toolCallsByIndex.set(this.toolCallsByIndex.size, {
        id: call.id ?? null,
        name: call.function?.name ?? '',
        arguments: call.function?.arguments ?? '',
      });
    }
  }

  finish(): AssembledCompletion {
    const toolCalls = [...this.toolCallsByIndex.entries()].sort(([a], [b]) => a - b).map(([, call]) => call);
    this.result.response = { content: this.content, reasoning: this.reasoning, tool_calls: toolCalls };
    // return_token_ids wins when the upstream sent both; the logprob tokens stand in when it sent only those.
    const spelledOut = this.idsFromLogprobTokens;
    if (this.result.completion_token_ids.length === 0 && spelledOut && spelledOut.length > 0) {
      this.result.completion_token_ids = [...spelledOut];
    }
    return this.result;
  }
}
