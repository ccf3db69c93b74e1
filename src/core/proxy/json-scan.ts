/**
 * Low-level scanning of JSON text by index, for the proxy's textual edits (json-text.ts) and for reading token data
 * without parsing whole chunks (logprobs-text.ts). Anything these do not follow throws `Unfollowable`: the caller
 * then falls back to JSON.parse.
 */

export const QUOTE = 0x22;
const BACKSLASH = 0x5c;
export const COMMA = 0x2c;
export const COLON = 0x3a;
export const OPEN_BRACE = 0x7b;
export const CLOSE_BRACE = 0x7d;
export const OPEN_BRACKET = 0x5b;
export const CLOSE_BRACKET = 0x5d;

export class Unfollowable extends Error {}

export function skipSpace(text: string, i: number): number {
  for (;;) {
    const c = text.charCodeAt(i);
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
    else return i;
  }
}

/** `i` at an opening quote: the index just past the closing one (not validated: the text is parsed later). */
export function skipString(text: string, i: number): number {
  let j = i;
  for (;;) {
    j = text.indexOf('"', j + 1);
    if (j < 0) throw new Unfollowable();
    let backslashes = 0;
    while (text.charCodeAt(j - 1 - backslashes) === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return j + 1;
  }
}

/** `i` at the start of any value: the index just past it (not validated: the text is parsed later). */
export function skipValue(text: string, i: number): number {
  const first = text.charCodeAt(i);
  if (first === QUOTE) return skipString(text, i);
  if (first === OPEN_BRACKET) {
    // The common large case, an array of numbers (token ids): one search instead of a walk.
    const close = text.indexOf(']', i);
    if (close > 0) {
      const inner = text.slice(i + 1, close);
      if (!inner.includes('[') && !inner.includes('{') && !inner.includes('"')) return close + 1;
    }
  }
  if (first === OPEN_BRACE || first === OPEN_BRACKET) {
    // One tight loop, strings skipped inline: this walks every injected logprobs object, once per streamed token.
    let depth = 0;
    for (let j = i; j < text.length; j++) {
      const c = text.charCodeAt(j);
      if (c === QUOTE) {
        for (j++; j < text.length; j++) {
          const d = text.charCodeAt(j);
          if (d === QUOTE) break;
          if (d === BACKSLASH) j++;
        }
      } else if (c === OPEN_BRACE || c === OPEN_BRACKET) depth++;
      else if ((c === CLOSE_BRACE || c === CLOSE_BRACKET) && --depth === 0) return j + 1;
    }
    throw new Unfollowable();
  }
  // A number or a literal: up to the next delimiter.
  let j = i;
  for (; j < text.length; j++) {
    const c = text.charCodeAt(j);
    if (c === COMMA || c === CLOSE_BRACE || c === CLOSE_BRACKET || c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) break;
  }
  if (j === i) throw new Unfollowable();
  return j;
}

// Strict scanning: what text that is cut out before JSON.parse needs, so malformed JSON is still never accepted.

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const isHex = (c: number) => isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
/** `"` `\` `/` `b` `f` `n` `r` `t`: the escapes JSON allows besides `\u`. */
const SIMPLE_ESCAPES = new Set([0x22, 0x5c, 0x2f, 0x62, 0x66, 0x6e, 0x72, 0x74]);

/** `i` at an opening quote of a string JSON.parse accepts: the index past its closing quote, negated when it holds escapes. */
function strictStringEnd(text: string, i: number): number {
  let escaped = false;
  for (let j = i + 1; j < text.length; j++) {
    const c = text.charCodeAt(j);
    if (c === QUOTE) return escaped ? -(j + 1) : j + 1;
    if (c < 0x20) throw new Unfollowable();
    if (c === BACKSLASH) {
      escaped = true;
      const e = text.charCodeAt(++j);
      if (e === 0x75) {
        for (let h = 1; h <= 4; h++) if (!isHex(text.charCodeAt(j + h))) throw new Unfollowable();
        j += 4;
      } else if (!SIMPLE_ESCAPES.has(e)) throw new Unfollowable();
    }
  }
  throw new Unfollowable();
}

/** `i` at an opening quote: the string's value, exactly as JSON.parse gives it. */
export function readString(text: string, i: number): { value: string; end: number } {
  const end = strictStringEnd(text, i);
  if (end > 0) return { value: text.slice(i + 1, end - 1), end };
  return { value: JSON.parse(text.slice(i, -end)) as string, end: -end };
}

/** `i` at the start of a JSON number: the index past it. */
function numberEnd(text: string, i: number): number {
  const digitsFrom = (j: number) => {
    while (isDigit(text.charCodeAt(j))) j++;
    return j;
  };
  let j = text.charCodeAt(i) === 0x2d ? i + 1 : i;
  const lead = text.charCodeAt(j);
  if (lead === 0x30) j++;
  else if (lead >= 0x31 && lead <= 0x39) j = digitsFrom(j + 1);
  else throw new Unfollowable();
  if (text.charCodeAt(j) === 0x2e) {
    if (!isDigit(text.charCodeAt(j + 1))) throw new Unfollowable();
    j = digitsFrom(j + 1);
  }
  const e = text.charCodeAt(j);
  if (e === 0x65 || e === 0x45) {
    const sign = text.charCodeAt(j + 1);
    j += sign === 0x2b || sign === 0x2d ? 2 : 1;
    if (!isDigit(text.charCodeAt(j))) throw new Unfollowable();
    j = digitsFrom(j);
  }
  return j;
}

/** `i` at a JSON number: its value (Number() of the literal is the double JSON.parse gives). */
export function readNumber(text: string, i: number): { value: number; end: number } {
  const end = numberEnd(text, i);
  return { value: Number(text.slice(i, end)), end };
}

export function isNumberStart(c: number): boolean {
  return c === 0x2d || isDigit(c);
}

function literalEnd(text: string, i: number, literal: string): number {
  if (!text.startsWith(literal, i)) throw new Unfollowable();
  return i + literal.length;
}

/** `i` at the start of any value: the index just past it, validated as JSON.parse would (anything else: Unfollowable). */
export function skipStrict(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c === QUOTE) return Math.abs(strictStringEnd(text, i));
  if (c === OPEN_BRACE || c === OPEN_BRACKET) {
    const close = c === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET;
    let j = skipSpace(text, i + 1);
    if (text.charCodeAt(j) === close) return j + 1;
    for (;;) {
      if (c === OPEN_BRACE) {
        if (text.charCodeAt(j) !== QUOTE) throw new Unfollowable();
        j = skipSpace(text, Math.abs(strictStringEnd(text, j)));
        if (text.charCodeAt(j) !== COLON) throw new Unfollowable();
        j = skipSpace(text, j + 1);
      }
      j = skipSpace(text, skipStrict(text, j));
      const next = text.charCodeAt(j);
      if (next === close) return j + 1;
      if (next !== COMMA) throw new Unfollowable();
      j = skipSpace(text, j + 1);
    }
  }
  if (c === 0x74) return literalEnd(text, i, 'true');
  if (c === 0x66) return literalEnd(text, i, 'false');
  if (c === 0x6e) return literalEnd(text, i, 'null');
  return numberEnd(text, i);
}
