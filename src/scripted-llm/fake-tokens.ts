/**
 * Deterministic stand-in for a tokenizer and sampler: the same text always gives the same tokens,
 * ids and log-probabilities, so tests can compare what the proxy recorded with what was sent.
 */

export interface FakeToken {
  token: string;
  id: number;
  logprob: number;
}

const VOCAB_SIZE = 151_936;

function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

export function tokenize(text: string): FakeToken[] {
  const pieces = text.match(/\s+|[\p{L}\p{N}_]+|[^\s\p{L}\p{N}_]/gu) ?? [];
  return pieces.map((token) => {
    const hash = fnv1a(token);
    return { token, id: hash % VOCAB_SIZE, logprob: -((hash >>> 8) % 2000) / 1000 };
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

export function promptTokenIds(messages: Array<{ content?: unknown }>): number[] {
  const text = messages.map((m) => (typeof m.content === 'string' ? m.content : JSON.stringify(m.content ?? ''))).join('\n');
  return tokenize(text).map((t) => t.id);
}
