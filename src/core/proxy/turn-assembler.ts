import type { AssembledCompletion, AssembledToolCall } from './types.js';

/**
 * Rebuilds one chat completion from what the upstream sent (stream chunks or a whole response):
 * the text, reasoning and tool calls the agent saw, plus the token-level data trainers need.
 */

interface LogprobEntry {
  token?: string;
  logprob?: number;
  top_logprobs?: Array<{ token?: string; logprob?: number }>;
}

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

  private addLogprobs(logprobs: { content?: LogprobEntry[] | null } | null | undefined): void {
    for (const entry of logprobs?.content ?? []) {
      this.result.completion_tokens.push(entry.token ?? '');
      this.result.per_token_logps.push(typeof entry.logprob === 'number' ? entry.logprob : NaN);
      if (entry.top_logprobs?.length) {
        this.result.top_logprobs.push(entry.top_logprobs.map((t) => ({ token: t.token ?? '', logprob: t.logprob ?? NaN })));
      }
    }
  }

  private addCommon(payload: any, choice: any): void {
    if (Array.isArray(payload.prompt_token_ids) && this.result.prompt_token_ids === null) this.result.prompt_token_ids = payload.prompt_token_ids;
    if (payload.usage) this.result.usage = payload.usage;
    if (!choice) return;
    if (Array.isArray(choice.token_ids)) this.result.completion_token_ids.push(...choice.token_ids);
    this.addLogprobs(choice.logprobs);
    if (choice.finish_reason) this.result.finish_reason = choice.finish_reason;
  }

  /** One parsed `data:` payload of a streamed response. */
  addChunk(payload: any): void {
    this.result.n_chunks += 1;
    const choice = Array.isArray(payload?.choices) ? payload.choices[0] : undefined;
    this.addCommon(payload, choice);
    const delta = choice?.delta;
    if (!delta) return;
    if (typeof delta.content === 'string') this.content += delta.content;
    const reasoning = delta.reasoning_content ?? delta.reasoning;
    if (typeof reasoning === 'string') this.reasoning += reasoning;
    for (const call of Array.isArray(delta.tool_calls) ? delta.tool_calls : []) {
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
    this.result.n_chunks = 1;
    const choice = Array.isArray(payload?.choices) ? payload.choices[0] : undefined;
    this.addCommon(payload, choice);
    const message = choice?.message ?? {};
    if (typeof message.content === 'string') this.content = message.content;
    const reasoning = message.reasoning_content ?? message.reasoning;
    if (typeof reasoning === 'string') this.reasoning = reasoning;
    for (const call of Array.isArray(message.tool_calls) ? message.tool_calls : []) {
      this.toolCallsByIndex.set(this.toolCallsByIndex.size, { id: call.id ?? null, name: call.function?.name ?? '', arguments: call.function?.arguments ?? '' });
    }
  }

  finish(): AssembledCompletion {
    const toolCalls = [...this.toolCallsByIndex.entries()].sort(([a], [b]) => a - b).map(([, call]) => call);
    this.result.response = { content: this.content, reasoning: this.reasoning, tool_calls: toolCalls };
    return this.result;
  }
}
