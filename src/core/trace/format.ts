import type { ProxyTurn } from '../proxy/types.js';
import type { RolloutResult, RolloutSpec } from '../rollout/schema.js';

/**
 * The trace file format, version 2: JSON Lines in `<rollout_id>.jsonl`, written as the rollout runs.
 *
 *   {"type":"header","version":2,"rollout_id":…,"created_at":…,"spec":…,"endpoint":…,"writer_pid":…,"writer_start":…}
 *   {"type":"turn","data":<ProxyTurn>}            one per LLM call, appended when the call completes
 *   {"type":"result","finished_at":…,"result":…}  last; a file without it is unfinished (being written, or interrupted)
 *
 * Version 1 (`<rollout_id>.json`, one JSON document written at the end) is still read.
 */

export const TRACE_VERSION = 2;
export const TRACE_EXTENSION = '.jsonl';
export const LEGACY_TRACE_EXTENSION = '.json';

/** The rollout's parameters as stored: `api_key` never is. */
export type StoredSpec = Omit<RolloutSpec, 'api_key'>;

export interface TraceHeaderLine {
  type: 'header';
  version: typeof TRACE_VERSION;
  rollout_id: string;
  created_at: string;
  spec: StoredSpec;
  /** The endpoint as the result reports it (name, redacted base_url, model), for results rebuilt after an interruption. */
  endpoint: RolloutResult['endpoint'];
  /** The process writing the trace: while it lives, an unfinished trace is in progress, not interrupted. */
  writer_pid: number;
  /** That process's start (boot id and start time), so a reused pid is not mistaken for the writer; null off Linux. */
  writer_start: string | null;
}

export interface TraceResultLine {
  type: 'result';
  finished_at: string;
  result: RolloutResult;
  /** Set on results written for an interrupted rollout: when the next server found it. */
  recovered_at?: string;
}

/** The fields a turn loses when it is stored without its bodies: they are what grows with the conversation. */
export const DROPPABLE_TURN_FIELDS = [
  'request',
  'response',
  'top_logprobs',
  'prompt_token_ids',
  'completion_tokens',
  'completion_token_ids',
  'per_token_logps',
] as const;
type DroppableField = (typeof DROPPABLE_TURN_FIELDS)[number];

/** Why a turn is stored without its bodies, and how big they were. */
export interface DroppedBodies {
  /** trace_budget: storing it would take the trace past OPENCODE_ENV_MAX_TRACE_MB; unserialisable: too big to turn into JSON at all. */
  reason: 'trace_budget' | 'unserialisable';
  message: string;
  /** Bytes the full turn line would have taken; null when it could not be measured. */
  turn_bytes: number | null;
  /** Bytes of each dropped field as JSON (null: could not be measured). */
  field_bytes: Partial<Record<DroppableField, number | null>>;
  /** Bytes of the trace before this turn, and the budget. */
  written_bytes: number;
  budget_bytes: number;
}

/** A turn as stored: a full ProxyTurn, or one whose bodies were dropped (those fields null) with a `dropped` marker. */
export type StoredTurn = Omit<ProxyTurn, DroppableField> & { [K in DroppableField]: ProxyTurn[K] | null } & { dropped?: DroppedBodies };

/**
 * Turn lines are exactly this prefix, the turn's JSON and `}`: a reader can hand out a turn's JSON text (or a
 * byte range of it) straight from the file, without parsing it.
 */
export const TURN_LINE_PREFIX = '{"type":"turn","data":';
export const TURN_LINE_SUFFIX = '}';

/** Version 1: everything in one JSON document (also the shape of `opencode-env://traces/<id>` when it fits). */
export interface TraceRecord {
  version: 1 | 2;
  rollout_id: string;
  created_at: string;
  finished_at: string | null;
  spec: StoredSpec;
  result: RolloutResult | null;
  turns: StoredTurn[];
}

/** One line of the index, and of `traces list`. */
export interface TraceSummary {
  rollout_id: string;
  task_id: string;
  created_at: string;
  reward: number | null;
  error: string | null;
  /** Absent in entries written before version 2. */
  error_kind?: string | null;
  turns: number;
}

export function summaryOf(rolloutId: string, createdAt: string, result: RolloutResult, turns: number): TraceSummary {
  return {
    rollout_id: rolloutId,
    task_id: result.task_id,
    created_at: createdAt,
    reward: result.reward,
    error: result.error,
    error_kind: result.error_kind,
    turns,
  };
}

/** A line of a version-2 file, parsed; null when it is not one (a torn or foreign line). */
export function parseTraceLine(text: string): TraceHeaderLine | TraceResultLine | { type: 'turn'; data: StoredTurn } | null {
  try {
    const value = JSON.parse(text) as { type?: unknown } | null;
    if (value && typeof value === 'object' && (value.type === 'header' || value.type === 'turn' || value.type === 'result')) {
      return value as TraceHeaderLine | TraceResultLine | { type: 'turn'; data: StoredTurn };
    }
  } catch {
    // not JSON: torn by a crash mid-write
  }
  return null;
}
