import { open, readFile, stat } from 'node:fs/promises';
import type { RolloutResult } from '../rollout/schema.js';
import { documentChunks, documentHead, readTraceEnds, turnJsonRange, type TraceEnds } from './document.js';
import type { StoredTurn } from './format.js';
import { readLines, readRange } from './lines.js';
import { partUri, refUri, turnUri, type TraceRef } from './uris.js';

/**
 * Trace resources that any MCP client can read: no answer carries more than MAX_ANSWER_BYTES (the SDK's
 * stdio client drops messages over 10 MiB). A trace that fits is one document, as version 1 stored it; one
 * that does not becomes a summary whose turns each have a URI of their own; any document still too large
 * (one huge turn, or a summary of thousands of turns) is served as an index of `/part/<k>` slices of its
 * JSON text, which the client concatenates.
 */

export const MAX_ANSWER_BYTES = 4 * 1024 * 1024;
/** Room for the JSON-RPC envelope around a document: id, uri, mimeType. */
const ENVELOPE_BYTES = 16 * 1024;
/** Bytes of text per slice: escaping can at most double them (every byte a quote or backslash). */
const SLICE_BYTES = 1536 * 1024;

export interface TraceContent {
  text: string;
  mimeType: 'application/json' | 'text/plain';
}

/** A turn's place in the file and what the summary document says of it. */
interface TurnEntry {
  start: number;
  end: number;
  brief: Record<string, unknown>;
}

/** What serving a large version-2 trace in parts needs, from one pass over its file. */
export interface TraceCatalog {
  size: number;
  mtimeMs: number;
  ends: TraceEnds;
  turns: TurnEntry[];
}

function brief(rolloutId: string, n: number, turn: StoredTurn, bytes: number): Record<string, unknown> {
  return {
    uri: turnUri(rolloutId, n),
    bytes,
    turn: turn.turn,
    kind: turn.kind,
    timestamp: turn.timestamp,
    latency_s: turn.latency_s,
    upstream_status: turn.upstream_status,
    upstream_error: turn.upstream_error?.message ?? null,
    finish_reason: turn.finish_reason,
    usage: turn.usage,
    completion_token_count: turn.completion_token_ids?.length || turn.completion_tokens?.length || 0,
    dropped: turn.dropped ?? null,
  };
}

export async function buildCatalog(file: string): Promise<TraceCatalog | null> {
  const { size, mtimeMs } = await stat(file);
  const ends = await readTraceEnds(file);
  if (!ends) return null;
  const turns: TurnEntry[] = [];
  for await (const { offset, bytes } of readLines(file)) {
    const range = turnJsonRange(bytes);
    if (!range) continue;
    try {
      const turn = JSON.parse(bytes.toString('utf8', range.start, range.end)) as StoredTurn;
      turns.push({
        start: offset + range.start,
        end: offset + range.end,
        brief: brief(ends.header.rollout_id, turns.length + 1, turn, range.end - range.start),
      });
    } catch {
      // a line we did not write: skipped, as every reader skips it
    }
  }
  return { size, mtimeMs, ends, turns };
}

/** Bytes of `text` once JSON-escaped into a message (control characters cannot occur in JSON text). */
function escapedBytes(bytes: Buffer): number {
  let extra = 0;
  for (const byte of bytes) if (byte === 0x22 || byte === 0x5c) extra += 1;
  return bytes.length + extra + 2;
}

function fits(bytes: Buffer): boolean {
  return escapedBytes(bytes) + ENVELOPE_BYTES <= MAX_ANSWER_BYTES;
}

/** Where slice k starts: k * SLICE_BYTES, moved back to the start of a UTF-8 character. */
function sliceStart(k: number, total: number, byteAt: (index: number) => number): number {
  let at = Math.min(k * SLICE_BYTES, total);
  while (at > 0 && at < total && (byteAt(at) & 0xc0) === 0x80) at -= 1;
  return at;
}

function sliceCount(total: number): number {
  return Math.ceil(total / SLICE_BYTES);
}

function partsIndex(ref: TraceRef, total: number): TraceContent {
  const uri = refUri(ref);
  const count = sliceCount(total);
  const index = {
    rollout_id: ref.rolloutId,
    uri,
    bytes: total,
    parts: Array.from({ length: count }, (_, k) => partUri(uri, k)),
    note:
      `This JSON document is ${total} bytes, more than one resources/read answer carries (${MAX_ANSWER_BYTES} bytes): ` +
      'read the parts in order and concatenate their text to get it.',
  };
  return { text: JSON.stringify(index), mimeType: 'application/json' };
}

/** The document in `bytes`, or its index of parts, or (with ref.part) one slice of it. */
function serveBuffer(ref: TraceRef, bytes: Buffer): TraceContent | null {
  if (fits(bytes)) return ref.part === null ? { text: bytes.toString('utf8'), mimeType: 'application/json' } : null;
  if (ref.part === null) return partsIndex(ref, bytes.length);
  if (ref.part >= sliceCount(bytes.length)) return null;
  const byteAt = (index: number) => bytes[index]!;
  const start = sliceStart(ref.part, bytes.length, byteAt);
  const end = sliceStart(ref.part + 1, bytes.length, byteAt);
  return { text: bytes.toString('utf8', start, end), mimeType: 'text/plain' };
}

/** Like serveBuffer, for bytes [start, end) of a file, reading only what the answer needs. */
async function serveFileRange(ref: TraceRef, file: string, start: number, end: number): Promise<TraceContent | null> {
  const total = end - start;
  const handle = await open(file, 'r');
  try {
    if (total + ENVELOPE_BYTES <= MAX_ANSWER_BYTES) {
      const bytes = await readRange(handle, start, total);
      if (fits(bytes)) return serveBuffer(ref, bytes);
    }
    if (ref.part === null) return partsIndex(ref, total);
    if (ref.part >= sliceCount(total)) return null;
    const from = ref.part * SLICE_BYTES;
    // The bytes around both boundaries, to move them back to character starts.
    const base = Math.max(0, from - 3);
    const window = await readRange(handle, start + base, Math.min(total, from + SLICE_BYTES + 1) - base);
    const byteAt = (index: number) => window[index - base] ?? 0;
    const sliceFrom = sliceStart(ref.part, total, byteAt);
    const sliceTo = sliceStart(ref.part + 1, total, byteAt);
    return { text: window.toString('utf8', sliceFrom - base, sliceTo - base), mimeType: 'text/plain' };
  } finally {
    await handle.close();
  }
}

function withoutProxyTurns(result: RolloutResult | null): Partial<RolloutResult> | null {
  if (!result) return null;
  const { proxy_turns: _turns, ...rest } = result;
  return rest;
}

/** The summary document of a trace too large to be one: every turn as a brief with its own URI. */
function summaryDocument(catalog: TraceCatalog): Buffer {
  const head = documentHead(catalog.ends, withoutProxyTurns(catalog.ends.result?.result ?? null));
  return Buffer.from(
    JSON.stringify({
      ...head,
      note:
        `This trace is ${catalog.size} bytes, more than one resources/read answer carries (${MAX_ANSWER_BYTES} bytes), so each ` +
        'entry of turns is a summary: read the full turn at its uri. result.proxy_turns is left out: the full turns hold all of it.',
      turns: catalog.turns.map((turn) => turn.brief),
    }),
  );
}

async function wholeDocument(file: string, ends: TraceEnds): Promise<Buffer> {
  const chunks: string[] = [];
  for await (const chunk of documentChunks(file, ends)) chunks.push(chunk);
  return Buffer.from(chunks.join(''));
}

/** A version-2 trace, one of its turns, or a slice of either; null when there is no such thing. */
export async function readV2Resource(
  file: string,
  ref: TraceRef,
  catalog: () => Promise<TraceCatalog | null>,
): Promise<TraceContent | null> {
  if (ref.turn !== null) {
    const entry = (await catalog())?.turns[ref.turn - 1];
    return entry ? serveFileRange(ref, file, entry.start, entry.end) : null;
  }
  const { size } = await stat(file);
  if (size + ENVELOPE_BYTES <= MAX_ANSWER_BYTES) {
    const ends = await readTraceEnds(file);
    if (!ends) return null;
    const whole = await wholeDocument(file, ends);
    if (fits(whole)) return serveBuffer(ref, whole);
  }
  const found = await catalog();
  return found ? serveBuffer(ref, summaryDocument(found)) : null;
}

/** A version-1 trace (one JSON document): whole when it fits, else in slices; it has no turn resources. */
export async function readV1Resource(file: string, ref: TraceRef): Promise<TraceContent | null> {
  if (ref.turn !== null) return null;
  const { size } = await stat(file);
  if (size + ENVELOPE_BYTES <= MAX_ANSWER_BYTES) return serveBuffer(ref, await readFile(file));
  return serveFileRange(ref, file, 0, size);
}
