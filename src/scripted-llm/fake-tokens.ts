/**
 * Deterministic stand-in for a tokenizer, a chat template and a sampler: the same text always gives the same
 * tokens, ids and log-probabilities, so tests can compare what the proxy recorded with what was sent, and
 * merge multi-turn conversations into training sequences against known answers.
 */

export interface FakeToken {
  token: string;
  id: number;
  logprob: number;
}

/** Ids of ordinary tokens are below this; the special tokens sit right above, as in Qwen's vocabulary. */
const TEXT_VOCAB_SIZE = 151_643;

/** The toy chat template's special tokens: never produced by `tokenize`, so their ids are unambiguous. */
export const SPECIAL_TOKENS = {
  imStart: { token: '<|im_start|>', id: 151_644 },
  imEnd: { token: '<|im_end|>', id: 151_645 },
} as const;

function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** Runs of whitespace, runs of letters/digits/underscores, and single other characters: concatenated, they give the text back. */
export function tokenize(text: string): FakeToken[] {
  const pieces = text.match(/\s+|[\p{L}\p{N}_]+|[^\s\p{L}\p{N}_]/gu) ?? [];
  return pieces.map((token) => {
    const hash = fnv1a(token);
    return { token, id: hash % TEXT_VOCAB_SIZE, logprob: -((hash >>> 8) % 2000) / 1000 };
  });
}

/** Alternatives for top_logprobs: the chosen token first, then less likely variants. */
export function topLogprobs(token: FakeToken, count: number): Array<{ token: string; logprob: number; bytes: number[] }> {
  const bytes = (t: string) => [...Buffer.from(t, 'utf8')];
  const alternatives = [{ token: token.token, logprob: token.logprob, bytes: bytes(token.token) }];
  for (let i = 1; i < count; i++) {
    const alt = `${token.token}~${i}`;
    alternatives.push({ token: alt, logprob: token.logprob - i, bytes: bytes(alt) });
  }
  return alternatives;
}

/** A chat message as OpenAI-compatible clients send it (opencode: system, user, assistant with tool_calls, tool). */
export interface TemplateMessage {
  role: string;
  content?: unknown;
  reasoning_content?: unknown;
  tool_calls?: unknown;
}

/**
 * What the model emits for one assistant turn, in order: reasoning, text, then per tool call its name and its
 * arguments (JSON text). The scripted server streams exactly these tokens, and the template renders an assistant
 * message as exactly these pieces, so a faithful client's next prompt contains the completion token for token.
 */
function completionPieces(turn: { reasoning?: string; text?: string; toolCalls?: Array<{ name: string; arguments: string }> }): string[] {
  const pieces = [turn.reasoning ?? '', turn.text ?? ''];
  for (const call of turn.toolCalls ?? []) pieces.push(call.name, call.arguments);
  return pieces.filter((p) => p !== '');
}

/** Message content as text: a string as is, text parts joined, anything else as JSON. */
function contentText(content: unknown): string {
  if (content === undefined || content === null) return '';
  if (typeof content === 'string') return content;
  if (Array.isArray(content) && content.every((p) => p && typeof p === 'object' && typeof (p as { text?: unknown }).text === 'string')) {
    return content.map((p) => (p as { text: string }).text).join('');
  }
  return JSON.stringify(content);
}

function toolCallsOf(message: TemplateMessage): Array<{ name: string; arguments: string }> {
  if (!Array.isArray(message.tool_calls)) return [];
  return message.tool_calls.map((call: { function?: { name?: unknown; arguments?: unknown } }) => ({
    name: typeof call?.function?.name === 'string' ? call.function.name : '',
    arguments: typeof call?.function?.arguments === 'string' ? call.function.arguments : JSON.stringify(call?.function?.arguments ?? {}),
  }));
}

/**
 * The toy chat template (ChatML-like; tools and tool-call ids are not rendered):
 *
 *   for each message:  <|im_start|> "{role}\n" {body pieces} <|im_end|> "\n"
 *   then:              <|im_start|> "assistant\n"                 (the generation prompt)
 *
 * An assistant message's body is `completionPieces` of its reasoning_content, content and tool calls; any other
 * message's body is its content as text. Every text piece is tokenized on its own, as if special tokens separated
 * them, so no token spans two pieces. Hence, for a client that sends the conversation back faithfully:
 *
 *   prompt(k+1) = prompt(k) + completion(k) + [<|im_end|>, "\n"] + (tool results ...) + [<|im_start|>, "assistant", "\n"]
 */
export function chatTemplateTokens(messages: TemplateMessage[]): FakeToken[] {
  const special = (s: { token: string; id: number }): FakeToken => ({ token: s.token, id: s.id, logprob: 0 });
  const tokens: FakeToken[] = [];
  const open = (role: string) => tokens.push(special(SPECIAL_TOKENS.imStart), ...tokenize(`${role}\n`));
  for (const message of messages) {
    open(message.role);
    const body =
      message.role === 'assistant'
        ? completionPieces({
            reasoning: contentText(message.reasoning_content),
            text: contentText(message.content),
            toolCalls: toolCallsOf(message),
          })
        : [contentText(message.content)];
    for (const piece of body) tokens.push(...tokenize(piece));
    tokens.push(special(SPECIAL_TOKENS.imEnd), ...tokenize('\n'));
  }
  open('assistant');
  return tokens;
}

/** The prompt's token ids: the rendered conversation, ending with the generation prompt. */
export function promptTokenIds(messages: TemplateMessage[]): number[] {
  return chatTemplateTokens(messages).map((t) => t.id);
}
