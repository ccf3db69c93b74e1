import type { Injection } from './injection.js';
import {
  CLOSE_BRACE,
  CLOSE_BRACKET,
  COLON,
  COMMA,
  OPEN_BRACE,
  OPEN_BRACKET,
  QUOTE,
  skipSpace,
  skipStrict,
  skipString,
  skipValue,
  Unfollowable,
} from './json-scan.js';
import { readLogprobs, readTokenIds, skipLogprobs, type LogprobsRead } from './logprobs-text.js';

/**
 * Edits of JSON *text*, so the proxy can change what it relays without parsing and re-serialising it first:
 * removing the injected fields from a stream chunk before it goes to the agent, reading what the recording needs
 * from the same walk (so only the chunk's small rest is ever parsed), and adding fields to a request body. On JSON
 * in JSON.stringify's own form (what vLLM, OpenAI and the scripted model send) the edits equal `JSON.stringify` of
 * the edited object; other formatting is kept as it came. Anything the scanner does not follow gives null: the
 * caller then falls back to parsing.
 */

interface Member {
  key: string;
  /** From the key's opening quote to the end of the value. */
  start: number;
  end: number;
}

type Cut = [start: number, end: number];

/**
 * Cuts that remove an object's members for which `removed` holds: each kept member keeps the separator that followed
 * it (the last kept one none), so whatever formatting the object had stays as it came.
 */
function memberCuts(members: readonly Member[], removed: (member: Member) => boolean, cuts: Cut[]): void {
  let lastKept = -1;
  for (let k = members.length - 1; k >= 0; k--) {
    if (!removed(members[k]!)) {
      lastKept = k;
      break;
    }
  }
  for (let k = 0; k < members.length; k++) {
    const member = members[k]!;
    if (!removed(member)) continue;
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
 * Walks the object starting at `i` (an opening brace), letting `visit` walk a member's value itself (returning the
 * index past it, or null to have it skipped); gives its members and the index past the closing brace.
 */
function walkObject(
  text: string,
  i: number,
  visit: (key: string, valueStart: number) => number | null,
): { members: Member[]; end: number } {
  const members: Member[] = [];
  let j = skipSpace(text, i + 1);
  if (text.charCodeAt(j) === CLOSE_BRACE) return { members, end: j + 1 };
  for (;;) {
    if (text.charCodeAt(j) !== QUOTE) throw new Unfollowable();
    const keyEnd = skipString(text, j);
    const key = text.slice(j + 1, keyEnd - 1);
    // An escaped key could spell a field's name another way: left to the parser.
    if (key.includes('\\')) throw new Unfollowable();
    let k = skipSpace(text, keyEnd);
    if (text.charCodeAt(k) !== COLON) throw new Unfollowable();
    const valueStart = skipSpace(text, k + 1);
    const end = visit(key, valueStart) ?? skipValue(text, valueStart);
    members.push({ key, start: j, end });
    k = skipSpace(text, end);
    const c = text.charCodeAt(k);
    if (c === CLOSE_BRACE) return { members, end: k + 1 };
    if (c !== COMMA) throw new Unfollowable();
    j = skipSpace(text, k + 1);
  }
}

function applyCuts(text: string, cuts: Cut[]): string {
  if (cuts.length === 0) return text;
  cuts.sort((a, b) => a[0] - b[0]);
  let out = '';
  let from = 0;
  for (const [cutStart, cutEnd] of cuts) {
    out += text.slice(from, cutStart);
    from = cutEnd;
  }
  return out + text.slice(from);
}

/** What the recording needs of a stream chunk, read from its text (see scanStreamChunk). */
export interface ChunkRecording {
  /** The chunk without any choice's `logprobs` and `token_ids`: the small rest, parsed for what else is recorded. */
  rest: string;
  /** The first choice's `logprobs` and `token_ids` as TurnAssembler reads them; undefined where it had none. */
  logprobs?: LogprobsRead | null;
  tokenIds?: number[] | null;
}

interface ChunkScan {
  /** The chunk without what the agent did not ask for: `stripInjected` on the text. */
  agentText: string;
  /** Null when the token data was not followed (or not asked for): parse the whole chunk for the recording. */
  recording: ChunkRecording | null;
}

const isTokenData = (member: Member) => member.key === 'logprobs' || member.key === 'token_ids';

/**
 * One walk over a stream chunk's JSON text giving the agent's copy (without the injected fields) and, with `record`,
 * what the recording needs without JSON.parse of the whole chunk (whose logprobs, with their `bytes` arrays, are
 * most of it). Null when the text is not followed (then parse it).
 */
export function scanStreamChunk(data: string, injected: readonly Injection[], record: boolean): ChunkScan | null {
  if (injected.length === 0 && !record) return { agentText: data, recording: null };
  const tokenIds = injected.includes('return_token_ids');
  const logprobs = injected.includes('logprobs');
  const agentCuts: Cut[] = [];
  const recordCuts: Cut[] = [];
  const state: { recording: ChunkRecording | null; choicesSeen: number } = { recording: record ? { rest: data } : null, choicesSeen: 0 };
  const injectedInChoice = (member: Member) => (tokenIds && member.key === 'token_ids') || (logprobs && member.key === 'logprobs');

  /** A choice's token data, read for the recording (the first choice's) or validated and cut (the others'). */
  const readChoiceMember = (index: number, key: string, at: number): number | null => {
    const recording = state.recording;
    if (!recording || (key !== 'logprobs' && key !== 'token_ids')) return null;
    try {
      if (index > 0) return key === 'logprobs' ? skipLogprobs(data, at) : skipStrict(data, at);
      if (key === 'logprobs') {
        const read = readLogprobs(data, at);
        recording.logprobs = read.value;
        return read.end;
      }
      const read = readTokenIds(data, at);
      recording.tokenIds = read.value;
      return read.end;
    } catch {
      // Not followed (malformed, or a shape TurnAssembler treats oddly): the whole chunk is parsed for the recording.
      state.recording = null;
      return null;
    }
  };
  const walkChoices = (key: string, valueStart: number): number | null => {
    if (key !== 'choices') return null;
    // JSON.parse keeps the last of repeated keys: left to it.
    if (++state.choicesSeen > 1) state.recording = null;
    if (data.charCodeAt(valueStart) !== OPEN_BRACKET) return null;
    let j = skipSpace(data, valueStart + 1);
    if (data.charCodeAt(j) === CLOSE_BRACKET) return j + 1;
    for (let index = 0; ; index++) {
      let end: number;
      if (data.charCodeAt(j) === OPEN_BRACE) {
        const choice = walkObject(data, j, (member, at) => readChoiceMember(index, member, at));
        memberCuts(choice.members, injectedInChoice, agentCuts);
        if (state.recording) memberCuts(choice.members, isTokenData, recordCuts);
        end = choice.end;
      } else end = skipValue(data, j);
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
    let end: number;
    if (data.charCodeAt(start) === OPEN_BRACE) {
      const top = walkObject(data, start, walkChoices);
      memberCuts(top.members, (member) => tokenIds && member.key === 'prompt_token_ids', agentCuts);
      end = top.end;
    } else end = skipValue(data, start);
    if (skipSpace(data, end) !== data.length) return null;
    const recording = state.recording;
    if (recording) recording.rest = applyCuts(data, recordCuts);
    return { agentText: applyCuts(data, agentCuts), recording };
  } catch (error) {
    if (error instanceof Unfollowable) return null;
    throw error;
  }
}

/**
 * The payload the recording gets from a scanned chunk: its rest parsed, with the first choice's token data put back
 * as read. TurnAssembler takes from it exactly what it takes from JSON.parse of the whole chunk. Throws when the rest
 * does not parse (then the chunk does not either: parse it whole, for the same error).
 */
export function recordedPayload(recording: ChunkRecording): unknown {
  const payload = JSON.parse(recording.rest) as { choices: Array<Record<string, unknown>> };
  if (recording.logprobs !== undefined) payload.choices[0]!.logprobs = recording.logprobs;
  if (recording.tokenIds !== undefined) payload.choices[0]!.token_ids = recording.tokenIds;
  return payload;
}

/**
 * `stripInjected` on JSON text: the chunk or response without what the agent did not ask for (the prompt's token
 * ids at the top, each choice's token ids and logprobs), or null when the text is not followed (then parse it).
 */
export function stripInjectedText(data: string, injected: readonly Injection[]): string | null {
  return scanStreamChunk(data, injected, false)?.agentText ?? null;
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
