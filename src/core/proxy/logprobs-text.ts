import {
  CLOSE_BRACE,
  CLOSE_BRACKET,
  COLON,
  COMMA,
  isNumberStart,
  OPEN_BRACE,
  OPEN_BRACKET,
  QUOTE,
  readNumber,
  readString,
  skipSpace,
  skipStrict,
  skipString,
  Unfollowable,
} from './json-scan.js';

/**
 * Reads a stream chunk's `logprobs` and `token_ids` values straight from the JSON text: only what TurnAssembler
 * uses (each token's text and logprob, its alternatives'), skipping the rest (each token's `bytes` arrays) without
 * building it. Validated as strictly as JSON.parse, and giving what TurnAssembler would take from JSON.parse's
 * objects; any shape it would treat oddly (a string as `content`, a null entry) throws Unfollowable: the caller
 * then parses the chunk whole.
 */

interface TokenAlternativeRead {
  token: string;
  /** The literal's value; TurnAssembler turns anything not finite into null, as it does for parsed values. */
  logprob: number | null;
}

interface LogprobEntryRead extends TokenAlternativeRead {
  top_logprobs: TokenAlternativeRead[] | null;
}

export interface LogprobsRead {
  content: LogprobEntryRead[] | null;
}

/** Calls `member` for each member of the object at `i` (keys as JSON.parse reads them); the index past the object. */
function readObject(text: string, i: number, member: (key: string, valueStart: number) => number): number {
  if (text.charCodeAt(i) !== OPEN_BRACE) throw new Unfollowable();
  let j = skipSpace(text, i + 1);
  if (text.charCodeAt(j) === CLOSE_BRACE) return j + 1;
  for (;;) {
    if (text.charCodeAt(j) !== QUOTE) throw new Unfollowable();
    const key = readString(text, j);
    j = skipSpace(text, key.end);
    if (text.charCodeAt(j) !== COLON) throw new Unfollowable();
    j = skipSpace(text, member(key.value, skipSpace(text, j + 1)));
    const c = text.charCodeAt(j);
    if (c === CLOSE_BRACE) return j + 1;
    if (c !== COMMA) throw new Unfollowable();
    j = skipSpace(text, j + 1);
  }
}

/** Calls `element` for each element of the array at `i`; the index past the array. */
function readArray(text: string, i: number, element: (valueStart: number) => number): number {
  let j = skipSpace(text, i + 1);
  if (text.charCodeAt(j) === CLOSE_BRACKET) return j + 1;
  for (;;) {
    j = skipSpace(text, element(j));
    const c = text.charCodeAt(j);
    if (c === CLOSE_BRACKET) return j + 1;
    if (c !== COMMA) throw new Unfollowable();
    j = skipSpace(text, j + 1);
  }
}

const isNull = (text: string, i: number) => text.startsWith('null', i);

/** A token's text: a string, or null/absent (which TurnAssembler reads as ''); anything else is not followed. */
function readToken(text: string, i: number, into: { token: string }): number {
  if (isNull(text, i)) {
    into.token = '';
    return i + 4;
  }
  if (text.charCodeAt(i) !== QUOTE) throw new Unfollowable();
  const read = readString(text, i);
  into.token = read.value;
  return read.end;
}

/** A logprob: a number's value; anything else (valid JSON) is null, as TurnAssembler makes it. */
function readLogprob(text: string, i: number, into: { logprob: number | null }): number {
  if (isNumberStart(text.charCodeAt(i))) {
    const read = readNumber(text, i);
    into.logprob = read.value;
    return read.end;
  }
  into.logprob = null;
  return skipStrict(text, i);
}

function readAlternative(text: string, i: number, into: TokenAlternativeRead[]): number {
  const alternative: TokenAlternativeRead = { token: '', logprob: null };
  into.push(alternative);
  return readObject(text, i, (key, at) =>
    key === 'token' ? readToken(text, at, alternative) : key === 'logprob' ? readLogprob(text, at, alternative) : skipStrict(text, at),
  );
}

function readEntry(text: string, i: number, into: LogprobEntryRead[]): number {
  const entry: LogprobEntryRead = { token: '', logprob: null, top_logprobs: null };
  into.push(entry);
  return readObject(text, i, (key, at) => {
    if (key === 'token') return readToken(text, at, entry);
    if (key === 'logprob') return readLogprob(text, at, entry);
    if (key !== 'top_logprobs') return skipStrict(text, at); // `bytes` and anything else TurnAssembler does not use
    const read = readListOrNull(text, at, readAlternative);
    entry.top_logprobs = read.list;
    return read.end;
  });
}

/** A value that is null or a list of items, each read by `item` (which appends it); anything else is not followed. */
function readListOrNull<T>(
  text: string,
  at: number,
  item: (text: string, i: number, into: T[]) => number,
): { list: T[] | null; end: number } {
  if (isNull(text, at)) return { list: null, end: at + 4 };
  if (text.charCodeAt(at) !== OPEN_BRACKET) throw new Unfollowable();
  const list: T[] = [];
  return { list, end: readArray(text, at, (j) => item(text, j, list)) };
}

// The layout vLLM and OpenAI send (pydantic's and JSON.stringify's: no spaces; token, logprob, bytes, top_logprobs in that
// order), matched by regular expressions, which run as native code: several times faster than walking it in JS.
const STRING = String.raw`"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"`;
const NUMBER = String.raw`-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?`;
const BYTES = String.raw`(?:null|\[(?:(?:0|[1-9]\d*)(?:,(?:0|[1-9]\d*))*)?\])`;
const ALTERNATIVE = String.raw`\{"token":${STRING},"logprob":${NUMBER},"bytes":${BYTES}\}`;
const ENTRY = String.raw`\{"token":${STRING},"logprob":${NUMBER},"bytes":${BYTES},"top_logprobs":\[(?:${ALTERNATIVE}(?:,${ALTERNATIVE})*)?\]\}`;
/** A whole `logprobs` value in that layout: valid JSON wherever it matches. */
const CANONICAL_LOGPROBS = new RegExp(String.raw`\{"content":\[(?:${ENTRY}(?:,${ENTRY})*)?\]\}`, 'y');
/** Where CANONICAL_LOGPROBS has put an item's parts, as `readCanonicalItem` finds them. */
interface ItemCursor {
  token: string;
  logprob: number;
  /** Past the item's `bytes` value. */
  end: number;
}

/**
 * One `{"token":…,"logprob":…,"bytes":…` of a value CANONICAL_LOGPROBS matched (so every step below lands where the
 * layout says; native searches do the walking), `j` at its brace: its token and logprob, into `cursor`.
 */
function readCanonicalItem(text: string, j: number, cursor: ItemCursor): void {
  const tokenStart = j + 9; // {"token":
  const tokenEnd = skipString(text, tokenStart);
  const token = text.slice(tokenStart + 1, tokenEnd - 1);
  cursor.token = token.includes('\\') ? (JSON.parse(text.slice(tokenStart, tokenEnd)) as string) : token;
  const numberStart = tokenEnd + 11; // ,"logprob":
  const numberEnd = text.indexOf(',', numberStart);
  cursor.logprob = Number(text.slice(numberStart, numberEnd));
  const bytesStart = numberEnd + 9; // ,"bytes":
  cursor.end = text.charCodeAt(bytesStart) === 0x6e ? bytesStart + 4 : text.indexOf(']', bytesStart) + 1;
}

/** The canonical layout's entries, or null when the value at `i` is laid out otherwise. */
function readCanonicalLogprobs(text: string, i: number): { value: LogprobsRead; end: number } | null {
  CANONICAL_LOGPROBS.lastIndex = i;
  if (!CANONICAL_LOGPROBS.test(text)) return null;
  const end = CANONICAL_LOGPROBS.lastIndex;
  const entries: LogprobEntryRead[] = [];
  const cursor: ItemCursor = { token: '', logprob: 0, end: 0 };
  let j = i + 12; // {"content":[
  while (text.charCodeAt(j) === OPEN_BRACE) {
    readCanonicalItem(text, j, cursor);
    const alternatives: TokenAlternativeRead[] = [];
    entries.push({ token: cursor.token, logprob: cursor.logprob, top_logprobs: alternatives });
    j = cursor.end + 17; // ,"top_logprobs":[
    while (text.charCodeAt(j) === OPEN_BRACE) {
      readCanonicalItem(text, j, cursor);
      alternatives.push({ token: cursor.token, logprob: cursor.logprob });
      j = cursor.end + 1; // }
      if (text.charCodeAt(j) === COMMA) j++;
    }
    j += 2; // ]}
    if (text.charCodeAt(j) === COMMA) j++;
  }
  return { value: { content: entries }, end };
}

/** `i` at a choice's `logprobs` value: the index past it, validated (for choices whose token data is not recorded). */
export function skipLogprobs(text: string, i: number): number {
  CANONICAL_LOGPROBS.lastIndex = i;
  return CANONICAL_LOGPROBS.test(text) ? CANONICAL_LOGPROBS.lastIndex : skipStrict(text, i);
}

/** `i` at a choice's `logprobs` value: what TurnAssembler reads of it, and the index past it. */
export function readLogprobs(text: string, i: number): { value: LogprobsRead | null; end: number } {
  if (text.charCodeAt(i) !== OPEN_BRACE) return { value: null, end: skipStrict(text, i) }; // no `.content`: no entries
  const canonical = readCanonicalLogprobs(text, i);
  if (canonical) return canonical;
  const value: LogprobsRead = { content: null };
  const end = readObject(text, i, (key, at) => {
    if (key !== 'content') return skipStrict(text, at);
    const read = readListOrNull(text, at, readEntry);
    value.content = read.list;
    return read.end;
  });
  return { value, end };
}

/** `i` at a choice's `token_ids` value: the ids (null when it is not an array, which TurnAssembler ignores), and the index past it. */
export function readTokenIds(text: string, i: number): { value: number[] | null; end: number } {
  if (text.charCodeAt(i) !== OPEN_BRACKET) return { value: null, end: skipStrict(text, i) };
  const ids: number[] = [];
  const end = readArray(text, i, (j) => {
    const read = readNumber(text, j);
    ids.push(read.value);
    return read.end;
  });
  return { value: ids, end };
}
