import { readTraceEnds } from '../trace/document.js';
import type { StoredTrace, TraceStore } from '../traces.js';
import { groupIdFor, mergeRolloutTurns, type MergeableTurn, type RolloutTokenReport, type TokenSequence } from './token-sequences.js';

/**
 * A stored trace's training sequences (see token-sequences.ts). Turns are read one at a time and only the
 * fields the merge needs are kept, so the requests (which repeat the whole conversation) never pile up.
 */
export async function traceTokenSequences(
  store: TraceStore,
  trace: StoredTrace,
): Promise<{ sequences: TokenSequence[]; report: RolloutTokenReport }> {
  const turns: MergeableTurn[] = [];
  for await (const t of trace.turns()) {
    if (t.kind !== 'agent') continue;
    turns.push({
      turn: t.turn,
      kind: t.kind,
      session_id: t.session_id,
      upstream_status: t.upstream_status,
      upstream_error: t.upstream_error,
      response: t.response,
      prompt_token_ids: t.prompt_token_ids,
      completion_token_ids: t.completion_token_ids,
      per_token_logps: t.per_token_logps,
      ...(t.dropped ? { dropped: t.dropped } : {}),
    });
  }
  // The spec is in the header of a version-2 trace (a version-1 trace has none: its group is its task).
  const ends = await readTraceEnds(store.fileFor(trace.rollout_id)).catch(() => null);
  const { task_id, reward } = trace.result;
  const meta = { rollout_id: trace.rollout_id, task_id, reward };
  return mergeRolloutTurns(turns, { ...meta, group_id: groupIdFor(ends?.header.spec, meta) });
}
