import type { Injection } from './injection.js';

/**
 * Edits of JSON *text*, so the proxy can change what it relays without parsing and re-serialising it first:
 * removing the injected fields from a stream chunk before it goes to the agent (the chunk is parsed for the
 * recording only after it was written), and adding fields to a request body. On JSON in JSON.stringify's own
 * form (what vLLM, OpenAI and the scripted model send) the results equal `JSON.stringify` of the edited
 * object; other formatting is kept as it came. Anything the scanner does not follow gives null: the caller
 * then falls back to parsing.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

class Unfollowable extends Error {}

function skipSpace(text: string, i: number): number {
  for (;;) {
    const c = text.charCodeAt(i);
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
    else return i;
  }
}

/** `i` at an opening quote: the index just past the closing one. */
function skipString(text: string, i: number): number {
  let j = i;
  for (;;) {
    j = text.indexOf('"', j + 1);
    if (j < 0) throw new Unfollowable();
    let backslashes = 0;
    while (text.charCodeAt(j - 1 - backslashes) === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return j + 1;
  }
}

/** `i` at the start of any value: the index just past it. */
function skipValue(text: string, i: number): number {
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

interface Member {
  /** From the key's opening quote to the end of the value. */
  start: number;
  end: number;
  removed: boolean;
}

/**
 * Cuts that remove an object's `removed` members: each kept member keeps the separator that followed it (the last
 * kept one none), so whatever formatting the object had stays as it came.
 */
function memberCuts(members: readonly Member[], cuts: Array<[number, number]>): void {
  let lastKept = -1;
  for (let k = members.length - 1; k >= 0; k--) {
    if (!members[k]!.removed) {
      lastKept = k;
      break;
    }
  }
  for (let k = 0; k < members.length; k++) {
    const member = members[k]!;
    if (!member.removed) continue;
    if (k < lastKept) {
      cuts.push([member.start, members[k + 1]!.start]);
      continue;
    }
    // The removed members after the last kept one go together with the separator before them.
    cuts.push([lastKept >= 0 ? members[lastKept]!.end : member.start, members[members.length - 1]!.end]);
    return;
  }
}

/**
 * Walks the object starting at `i` (an opening brace), asking `remove` about each member and `descend` to walk a
 * kept member's value itself (returning the index past it); returns the index past the closing brace.
 */
function walkObject(
  text: string,
  i: number,
  cuts: Array<[number, number]>,
  remove: (key: string) => boolean,
  descend: ((key: string, valueStart: number) => number | null) | null,
): number {
  const members: Member[] = [];
  let j = skipSpace(text, i + 1);
  if (text.charCodeAt(j) === CLOSE_BRACE) return j + 1;
  for (;;) {
    if (text.charCodeAt(j) !== QUOTE) throw new Unfollowable();
    const keyEnd = skipString(text, j);
    const key = text.slice(j + 1, keyEnd - 1);
    // An escaped key could spell a field's name another way: left to the parser.
    if (key.includes('\\')) throw new Unfollowable();
    let k = skipSpace(text, keyEnd);
    if (text.charCodeAt(k) !== COLON) throw new Unfollowable();
    const valueStart = skipSpace(text, k + 1);
    const removed = remove(key);
    const end = (!removed && descend?.(key, valueStart)) || skipValue(text, valueStart);
    members.push({ start: j, end, removed });
    k = skipSpace(text, end);
    const c = text.charCodeAt(k);
    if (c === CLOSE_BRACE) {
      memberCuts(members, cuts);
      return k + 1;
    }
    if (c !== COMMA) throw new Unfollowable();
    j = skipSpace(text, k + 1);
  }
}

/**
 * `stripInjected` on JSON text: the chunk or response without what the agent did not ask for (the prompt's token
 * ids at the top, each choice's token ids and logprobs), or null when the text is not followed (then parse it).
 */
export function stripInjectedText(data: string, injected: readonly Injection[]): string | null {
  if (injected.length === 0) return data;
  const tokenIds = injected.includes('return_token_ids');
  const logprobs = injected.includes('logprobs');
  const cuts: Array<[number, number]> = [];
  const fromChoice = (key: string) => (tokenIds && key === 'token_ids') || (logprobs && key === 'logprobs');
  const walkChoices = (key: string, valueStart: number): number | null => {
    if (key !== 'choices' || data.charCodeAt(valueStart) !== OPEN_BRACKET) return null;
    let j = skipSpace(data, valueStart + 1);
    if (data.charCodeAt(j) === CLOSE_BRACKET) return j + 1;
    for (;;) {
      const end = data.charCodeAt(j) === OPEN_BRACE ? walkObject(data, j, cuts, fromChoice, null) : skipValue(data, j);
      const k = skipSpace(data, end);
      const c = data.charCodeAt(k);
      if (c === CLOSE_BRACKET) return k + 1;
      if (c !== COMMA) throw new Unfollowable();
      j = skipSpace(data, k + 1);
    }
  };
  try {
    const start = skipSpace(data, 0);
    // Anything but an object passes as it is (stripInjected leaves it alone too).
    const end =
      data.charCodeAt(start) === OPEN_BRACE
        ? walkObject(data, start, cuts, (key) => tokenIds && key === 'prompt_token_ids', walkChoices)
        : skipValue(data, start);
    if (skipSpace(data, end) !== data.length) return null;
    if (cuts.length === 0) return data;
    cuts.sort((a, b) => a[0] - b[0]);
    let out = '';
    let from = 0;
    for (const [cutStart, cutEnd] of cuts) {
      out += data.slice(from, cutStart);
      from = cutEnd;
    }
    return out + data.slice(from);
  } catch (error) {
    if (error instanceof Unfollowable) return null;
    throw error;
  }
}

/**
 * A request body (the text of a JSON object) with `added` members appended at its end, in their order: what
 * `JSON.stringify({ ...original, ...added })` gives when none of them was in the original, without re-serialising
 * the (tens of kilobytes of) conversation. The caller makes sure none of them already exists.
 */
export function appendMembers(body: Buffer, added: Record<string, unknown>): Buffer {
  const entries = Object.entries(added);
  if (entries.length === 0) return body;
  const close = body.lastIndexOf(CLOSE_BRACE);
  const open = body.indexOf(OPEN_BRACE);
  if (open < 0 || close < open) throw new Error('not a JSON object');
  let first = open + 1;
  while (first < close && (body[first] === 0x20 || body[first] === 0x0a || body[first] === 0x0d || body[first] === 0x09)) first++;
  const members = entries.map(([key, value]) => `${JSON.stringify(key)}:${JSON.stringify(value)}`).join(',');
  return Buffer.concat([body.subarray(0, close), Buffer.from(`${first === close ? '' : ','}${members}`), body.subarray(close)]);
}
