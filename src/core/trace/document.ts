import type { RolloutResult } from '../rollout/schema.js';
import { parseTraceLine, TURN_LINE_PREFIX, TURN_LINE_SUFFIX, type TraceHeaderLine, type TraceResultLine } from './format.js';
import { readFirstLine, readLastLine, readLines } from './lines.js';

/**
 * A version-2 trace as the one JSON document version 1 stored (version, rollout_id, created_at, finished_at,
 * spec, result, turns), produced piece by piece: turns go out as the text stored, one at a time, never parsed.
 */

const PREFIX = Buffer.from(TURN_LINE_PREFIX);
const SUFFIX = Buffer.from(TURN_LINE_SUFFIX);

/** The byte range of a turn's JSON inside its line, or null when the line is not a turn line. */
export function turnJsonRange(bytes: Buffer): { start: number; end: number } | null {
  if (bytes.length < PREFIX.length + SUFFIX.length || !bytes.subarray(0, PREFIX.length).equals(PREFIX)) return null;
  if (!bytes.subarray(bytes.length - SUFFIX.length).equals(SUFFIX)) return null;
  return { start: PREFIX.length, end: bytes.length - SUFFIX.length };
}

export interface TraceEnds {
  header: TraceHeaderLine;
  /** null while the trace is unfinished. */
  result: TraceResultLine | null;
}

/** The header and, when the trace is finished, the result line: the file's first and last lines. */
export async function readTraceEnds(file: string): Promise<TraceEnds | null> {
  const first = await readFirstLine(file);
  const header = first ? parseTraceLine(first.bytes.toString('utf8')) : null;
  if (header?.type !== 'header') return null;
  const last = await readLastLine(file);
  const tail = last ? parseTraceLine(last.line.bytes.toString('utf8')) : null;
  return { header, result: tail?.type === 'result' ? tail : null };
}

/** Everything but the turns, in the document's key order; `result` may be reshaped by the caller. */
export function documentHead(
  ends: TraceEnds,
  result: Partial<RolloutResult> | null = ends.result?.result ?? null,
): Record<string, unknown> {
  return {
    version: ends.header.version,
    rollout_id: ends.header.rollout_id,
    created_at: ends.header.created_at,
    finished_at: ends.result?.finished_at ?? null,
    spec: ends.header.spec,
    result,
  };
}

/** Each turn's JSON text, in order, straight from the file. */
export async function* turnTexts(file: string): AsyncGenerator<string> {
  for await (const { bytes } of readLines(file)) {
    const range = turnJsonRange(bytes);
    if (range) yield bytes.toString('utf8', range.start, range.end);
  }
}

/** The whole document as text chunks: memory stays around one turn. */
export async function* documentChunks(file: string, ends: TraceEnds): AsyncGenerator<string> {
  const head = JSON.stringify(documentHead(ends));
  yield `${head.slice(0, -1)},"turns":[`;
  let first = true;
  for await (const text of turnTexts(file)) {
    yield first ? text : `,${text}`;
    first = false;
  }
  yield ']}';
}
