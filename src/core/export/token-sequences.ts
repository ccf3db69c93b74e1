import type { StoredTurn } from '../trace/format.js';

/**
 * Token-faithful training sequences from one rollout's recorded LLM calls (pure: no I/O).
 *
 * Per opencode session, the agent turns (title and auxiliary calls left out) are merged in order: the first
 * turn's prompt ids become `prompt_ids`; each turn's completion ids go into `response_ids` with mask 1 and their
 * logprobs; the tokens the next prompt adds beyond (previous prompt + previous completion) — the end-of-turn
 * token, tool results, the next generation prompt — go in with mask 0 and logprob 0.0 (a placeholder that a
 * masked loss never reads, so the arrays stay plain floats). When a prompt does not extend the previous prompt
 * plus completion (history rewritten, compaction, a template that drops reasoning), that is a prefix break: the
 * sequence ends and the turn starts a new one. Hence for every sequence, prompt_ids + response_ids equals its
 * last turn's prompt + completion ids.
 */

export interface TokenSequence {
  prompt_ids: number[];
  response_ids: number[];
  /** 1: sampled by the model (train on it); 0: context the environment added. */
  loss_mask: Array<0 | 1>;
  /** The model's logprob per response token; 0.0 under mask 0, null where the upstream gave none for a sampled token. */
  response_logprobs: Array<number | null>;
  reward: number | null;
  rollout_id: string;
  task_id: string;
  group_id: string;
  /** opencode's session id (a rollout with subagents has several sessions). */
  session_id: string | null;
  /** The rollout's turn numbers merged into this sequence. */
  turns: number[];
}

export interface RolloutTokenReport {
  rollout_id: string;
  sequences: number;
  prefix_breaks: number;
  /** Why nothing of this rollout was exported (missing token ids, ...), or null. */
  flagged: string | null;
}

export interface RolloutMeta {
  rollout_id: string;
  task_id: string;
  group_id: string;
  reward: number | null;
}

/** The fields of a turn the merge reads: a StoredTurn (or a ProxyTurn) has them all. */
export type MergeableTurn = Pick<
  StoredTurn,
  | 'turn'
  | 'kind'
  | 'session_id'
  | 'upstream_status'
  | 'upstream_error'
  | 'response'
  | 'prompt_token_ids'
  | 'completion_token_ids'
  | 'per_token_logps'
  | 'dropped'
>;

/**
 * The group a rollout's sequences belong to (GRPO compares rewards within one): the spec's `group_id` when the
 * rollout was given one, else its task_id, else the rollout alone.
 */
export function groupIdFor(spec: unknown, meta: { rollout_id: string; task_id: string }): string {
  const given = spec && typeof spec === 'object' ? (spec as { group_id?: unknown }).group_id : undefined;
  if (typeof given === 'string' && given !== '') return given;
  return meta.task_id || meta.rollout_id;
}

/** A call the agent never saw an answer to (an upstream error, a refused request): it adds nothing to train on. */
function answered(turn: MergeableTurn): boolean {
  return !turn.upstream_error && turn.upstream_status !== null && turn.upstream_status >= 200 && turn.upstream_status < 300;
}

function producedOutput(turn: MergeableTurn): boolean {
  const r = turn.response;
  return !r || r.content !== '' || r.reasoning !== '' || r.tool_calls.length > 0;
}

/** Why this turn's tokens cannot be used, or null when they can. */
function missingIds(turn: MergeableTurn): string | null {
  if (turn.dropped) return `turn ${turn.turn} was stored without its token ids (${turn.dropped.reason})`;
  if (!turn.prompt_token_ids || turn.prompt_token_ids.length === 0) return `turn ${turn.turn} has no prompt token ids`;
  const completion = turn.completion_token_ids ?? [];
  if (completion.length === 0 && producedOutput(turn)) return `turn ${turn.turn} has no completion token ids`;
  const logps = turn.per_token_logps ?? [];
  if (logps.length !== completion.length) {
    return `turn ${turn.turn} has ${completion.length} completion token ids but ${logps.length} logprobs`;
  }
  return null;
}

function startsWith(ids: number[], prefix: number[]): boolean {
  if (prefix.length > ids.length) return false;
  for (let i = 0; i < prefix.length; i++) if (ids[i] !== prefix[i]) return false;
  return true;
}

/** One token at a time: spreading a prompt's tens of thousands of ids into push() can overflow the stack. */
function append(sequence: TokenSequence, id: number, mask: 0 | 1, logprob: number | null): void {
  sequence.response_ids.push(id);
  sequence.loss_mask.push(mask);
  sequence.response_logprobs.push(logprob);
}

/** Agent turns that were answered, grouped by session in order of first appearance, each in turn order. */
function agentTurnsBySession(turns: Iterable<MergeableTurn>): MergeableTurn[][] {
  const sessions = new Map<string | null, MergeableTurn[]>();
  for (const turn of turns) {
    if (turn.kind !== 'agent' || !answered(turn)) continue;
    const list = sessions.get(turn.session_id) ?? [];
    list.push(turn);
    sessions.set(turn.session_id, list);
  }
  return [...sessions.values()].map((list) => list.sort((a, b) => a.turn - b.turn));
}

export function mergeRolloutTurns(
  turns: Iterable<MergeableTurn>,
  meta: RolloutMeta,
): { sequences: TokenSequence[]; report: RolloutTokenReport } {
  const sessions = agentTurnsBySession(turns);
  const report: RolloutTokenReport = { rollout_id: meta.rollout_id, sequences: 0, prefix_breaks: 0, flagged: null };
  const flag = (why: string) => ({ sequences: [], report: { ...report, flagged: why } });
  if (sessions.length === 0) return flag('no answered agent turns');
  for (const session of sessions) {
    for (const turn of session) {
      const why = missingIds(turn);
      if (why) return flag(why);
    }
  }

  const sequences: TokenSequence[] = [];
  for (const session of sessions) {
    let current: TokenSequence | null = null;
    /** The current sequence's prompt + response: what the next prompt must start with. */
    let context: number[] = [];
    for (const turn of session) {
      const prompt = turn.prompt_token_ids ?? [];
      const completion = turn.completion_token_ids ?? [];
      const logps = turn.per_token_logps ?? [];
      if (current && startsWith(prompt, context)) {
        for (let i = context.length; i < prompt.length; i++) append(current, prompt[i]!, 0, 0);
      } else {
        if (current) {
          report.prefix_breaks += 1;
          sequences.push(current);
        }
        current = {
          prompt_ids: [...prompt],
          response_ids: [],
          loss_mask: [],
          response_logprobs: [],
          reward: meta.reward,
          rollout_id: meta.rollout_id,
          task_id: meta.task_id,
          group_id: meta.group_id,
          session_id: turn.session_id,
          turns: [],
        };
      }
      completion.forEach((id, i) => append(current!, id, 1, logps[i] ?? null));
      current.turns.push(turn.turn);
      context = [...prompt, ...completion];
    }
    if (current) sequences.push(current);
  }
  report.sequences = sequences.length;
  return { sequences, report };
}
