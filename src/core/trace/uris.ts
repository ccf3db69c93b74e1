/**
 * Trace resource URIs:
 *   opencode-env://traces/<id>                   the trace (whole, or a summary whose turns point to their own URIs)
 *   opencode-env://traces/<id>/turns/<n>         the n-th recorded turn in full (1-based, in the order of `turns`)
 *   <either of those>/part/<k>                   the k-th slice (0-based) of a document too large for one answer
 */

export const TRACE_URI_PREFIX = 'opencode-env://traces/';
export const ROLLOUT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

const TRACE_URI_PATTERN =
  /^opencode-env:\/\/traces\/([A-Za-z0-9][A-Za-z0-9._-]{0,127})(?:\/turns\/([1-9][0-9]{0,8}))?(?:\/part\/(0|[1-9][0-9]{0,8}))?$/;

export interface TraceRef {
  rolloutId: string;
  /** 1-based position in the trace's turns; null for the trace itself. */
  turn: number | null;
  /** 0-based slice; null for the whole document. */
  part: number | null;
}

export function traceUri(rolloutId: string): string {
  return `${TRACE_URI_PREFIX}${rolloutId}`;
}

export function turnUri(rolloutId: string, turn: number): string {
  return `${traceUri(rolloutId)}/turns/${turn}`;
}

export function partUri(documentUri: string, part: number): string {
  return `${documentUri}/part/${part}`;
}

export function refUri(ref: TraceRef): string {
  const document = ref.turn === null ? traceUri(ref.rolloutId) : turnUri(ref.rolloutId, ref.turn);
  return ref.part === null ? document : partUri(document, ref.part);
}

/** The trace a URI names, or null for anything else: other shapes, encoded characters, traversal, overlong ids. */
export function parseTraceUri(uri: string): TraceRef | null {
  const match = TRACE_URI_PATTERN.exec(uri);
  if (!match) return null;
  return { rolloutId: match[1]!, turn: match[2] ? Number(match[2]) : null, part: match[3] ? Number(match[3]) : null };
}
