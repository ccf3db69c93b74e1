import type { RolloutResult } from '../rollout/schema.js';
import type { StoredTurn } from '../trace/format.js';

/**
 * One rollout as a trajectory in Harbor's Agent Trajectory Interchange Format (ATIF, RFC 0001 of
 * laude-institute/harbor, version 1.4: the schema is resources/atif/trajectory.schema.json). Pure: no I/O.
 *
 * The agent turns become agent steps, in order (title and auxiliary calls are left out: they are not the
 * agent acting). A session's first request gives the system and user steps before its first agent step. A
 * step's observation holds the results of its tool calls, taken from the next request of the same opencode
 * session (opencode sends them back as `tool` messages); the last step's calls have no next request, so no
 * observation. Metrics carry the upstream's usage, the token ids and the logprobs the proxy recorded.
 */

const ATIF_SCHEMA_VERSION = 'ATIF-v1.4';

interface AtifToolCall {
  tool_call_id: string;
  function_name: string;
  arguments: Record<string, unknown>;
}

interface AtifObservation {
  results: Array<{ source_call_id?: string; content?: string }>;
}

interface AtifMetrics {
  prompt_tokens?: number;
  completion_tokens?: number;
  cached_tokens?: number;
  prompt_token_ids?: number[];
  completion_token_ids?: number[];
  logprobs?: number[];
  extra?: Record<string, unknown>;
}

export interface AtifStep {
  step_id: number;
  timestamp?: string;
  source: 'system' | 'user' | 'agent';
  model_name?: string;
  message: string;
  reasoning_content?: string;
  tool_calls?: AtifToolCall[];
  observation?: AtifObservation;
  metrics?: AtifMetrics;
  extra?: Record<string, unknown>;
}

interface AtifFinalMetrics {
  total_prompt_tokens: number;
  total_completion_tokens: number;
  total_cached_tokens?: number;
  total_steps: number;
  extra?: Record<string, unknown>;
}

export interface AtifTrajectory {
  schema_version: typeof ATIF_SCHEMA_VERSION;
  session_id: string;
  agent: { name: string; version: string; model_name?: string; extra?: Record<string, unknown> };
  steps: AtifStep[];
  notes?: string;
  final_metrics: AtifFinalMetrics;
  extra?: Record<string, unknown>;
}

/** The agent that ran the rollout: opencode and its version (the trace does not record it; the caller knows it). */
export interface AtifAgent {
  name: string;
  version: string;
}

/** The fields of a turn the export reads: a StoredTurn (or a ProxyTurn) has them all. */
export type AtifTurn = Pick<
  StoredTurn,
  | 'turn'
  | 'timestamp'
  | 'kind'
  | 'session_id'
  | 'request'
  | 'response'
  | 'finish_reason'
  | 'usage'
  | 'prompt_token_ids'
  | 'completion_token_ids'
  | 'per_token_logps'
  | 'latency_s'
  | 'upstream_error'
  | 'dropped'
>;

type ChatMessage = { role?: unknown; content?: unknown; tool_call_id?: unknown };

/** A message's text: a string, or the text parts of a content array (images and other parts have none). */
function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((part: unknown) =>
      part && typeof part === 'object' && typeof (part as { text?: unknown }).text === 'string' ? (part as { text: string }).text : '',
    )
    .filter((text) => text !== '')
    .join('\n');
}

function messagesOf(turn: AtifTurn): ChatMessage[] {
  const messages = turn.request?.messages;
  return Array.isArray(messages) ? (messages.filter((m) => m && typeof m === 'object') as ChatMessage[]) : [];
}

function count(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : undefined;
}

/** Tool arguments as an object (ATIF requires one); text that is not a JSON object is kept beside, in the step's extra. */
function parseArguments(text: string): Record<string, unknown> | null {
  if (text.trim() === '') return {};
  try {
    const parsed: unknown = JSON.parse(text);
    return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function metricsOf(turn: AtifTurn): AtifMetrics {
  const usage = turn.usage ?? {};
  const metrics: AtifMetrics = {};
  const prompt = count(usage.prompt_tokens) ?? turn.prompt_token_ids?.length;
  const completion = count(usage.completion_tokens) ?? turn.completion_token_ids?.length;
  if (prompt !== undefined) metrics.prompt_tokens = prompt;
  if (completion !== undefined) metrics.completion_tokens = completion;
  const cached = count((usage.prompt_tokens_details as { cached_tokens?: unknown } | undefined)?.cached_tokens);
  if (cached !== undefined) metrics.cached_tokens = cached;
  if (turn.prompt_token_ids?.length) metrics.prompt_token_ids = turn.prompt_token_ids;
  if (turn.completion_token_ids?.length) metrics.completion_token_ids = turn.completion_token_ids;
  const logps = turn.per_token_logps ?? [];
  // ATIF's logprobs are numbers aligned with the token ids: a partial list would misalign them, so it is left out and counted.
  const missing = logps.filter((p) => p === null).length;
  if (logps.length > 0 && missing === 0) metrics.logprobs = logps as number[];
  const extra: Record<string, unknown> = {};
  if (missing > 0) extra.logprobs_missing = missing;
  const reasoning = count((usage.completion_tokens_details as { reasoning_tokens?: unknown } | undefined)?.reasoning_tokens);
  if (reasoning !== undefined) extra.reasoning_tokens = reasoning;
  if (Object.keys(extra).length > 0) metrics.extra = extra;
  return metrics;
}

/** An agent step waiting for its tool results (they come with the next request of its session). */
interface PendingStep {
  step: AtifStep;
  callIds: string[];
}

/**
 * Builds a trajectory one turn at a time, so a caller can stream turns from a trace and keep only the step
 * still waiting for its tool results, never the requests (which repeat the whole conversation).
 */
export class AtifBuilder {
  private readonly steps: AtifStep[] = [];
  private readonly pending = new Map<string, PendingStep>();
  private readonly sessions: string[] = [];
  private leftOut = 0;

  constructor(
    private readonly agent: AtifAgent,
    private readonly rolloutId: string,
  ) {}

  add(turn: AtifTurn): void {
    if (turn.kind !== 'agent') {
      this.leftOut += 1;
      return;
    }
    const session = turn.session_id ?? '';
    const messages = messagesOf(turn);
    const previous = this.pending.get(session);
    if (previous) this.observe(previous, messages);
    if (!this.sessions.includes(session)) {
      this.sessions.push(session);
      this.addContextSteps(turn, messages);
    } else {
      // Messages the agent did not write, added after its last answer (opencode's reminders, a user's follow-up).
      const lastAnswer = messages.map((m) => m.role).lastIndexOf('assistant');
      this.addContextSteps(turn, lastAnswer >= 0 ? messages.slice(lastAnswer + 1) : []);
    }
    this.pending.set(session, this.agentStep(turn));
  }

  finish(result: RolloutResult): AtifTrajectory {
    let prompt = 0;
    let completion = 0;
    let cached: number | undefined;
    for (const { metrics } of this.steps) {
      prompt += metrics?.prompt_tokens ?? 0;
      completion += metrics?.completion_tokens ?? 0;
      if (metrics?.cached_tokens !== undefined) cached = (cached ?? 0) + metrics.cached_tokens;
    }
    const agentSteps = this.steps.filter((s) => s.source === 'agent').length;
    return {
      schema_version: ATIF_SCHEMA_VERSION,
      session_id: this.rolloutId,
      agent: {
        name: this.agent.name,
        version: this.agent.version,
        model_name: result.endpoint.model,
        extra: { endpoint: result.endpoint.name, mode: result.mode },
      },
      steps: this.steps,
      notes:
        `Exported by opencode-env from the trace of rollout ${this.rolloutId}: one agent step per LLM call of the agent; ` +
        `title and auxiliary calls are left out (${this.leftOut} here). Observations are the tool results the next request carried.`,
      final_metrics: {
        total_prompt_tokens: prompt,
        total_completion_tokens: completion,
        ...(cached !== undefined ? { total_cached_tokens: cached } : {}),
        total_steps: this.steps.length,
        extra: { agent_steps: agentSteps, left_out_llm_calls: this.leftOut },
      },
      extra: {
        rollout_id: result.rollout_id,
        task_id: result.task_id,
        reward: result.reward,
        rewards: result.rewards,
        error: result.error,
        error_kind: result.error_kind,
        agent_timed_out: result.agent_timed_out,
        budget_exhausted: result.budget_exhausted,
        wall_s: result.wall_s,
        opencode_sessions: this.sessions.filter((s) => s !== ''),
      },
    };
  }

  private nextId(): number {
    return this.steps.length + 1;
  }

  private addContextSteps(turn: AtifTurn, messages: ChatMessage[]): void {
    for (const message of messages) {
      if (message.role !== 'system' && message.role !== 'user') continue;
      this.steps.push({
        step_id: this.nextId(),
        timestamp: turn.timestamp,
        source: message.role,
        message: textOf(message.content),
        ...(turn.session_id ? { extra: { session_id: turn.session_id } } : {}),
      });
    }
  }

  private agentStep(turn: AtifTurn): PendingStep {
    const response = turn.response ?? { content: '', reasoning: '', tool_calls: [] };
    const toolCalls: AtifToolCall[] = [];
    const unparsed: Record<string, string> = {};
    response.tool_calls.forEach((call, index) => {
      // A call without an id still needs one to be referred to; the proxy keeps the model's ids when it gave them.
      const id = call.id ?? `call_${turn.turn}_${index}`;
      const args = parseArguments(call.arguments);
      if (args === null) unparsed[id] = call.arguments;
      toolCalls.push({ tool_call_id: id, function_name: call.name, arguments: args ?? {} });
    });
    const extra: Record<string, unknown> = {
      turn: turn.turn,
      session_id: turn.session_id,
      finish_reason: turn.finish_reason,
      latency_s: turn.latency_s,
    };
    if (Object.keys(unparsed).length > 0) extra.unparsed_tool_arguments = unparsed;
    if (turn.upstream_error) extra.upstream_error = turn.upstream_error;
    if (turn.dropped) extra.dropped = { reason: turn.dropped.reason, message: turn.dropped.message };
    const model = turn.request?.model;
    const step: AtifStep = {
      step_id: this.nextId(),
      timestamp: turn.timestamp,
      source: 'agent',
      ...(typeof model === 'string' && model !== '' ? { model_name: model } : {}),
      message: response.content,
      ...(response.reasoning ? { reasoning_content: response.reasoning } : {}),
      ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
      metrics: metricsOf(turn),
      extra,
    };
    this.steps.push(step);
    return { step, callIds: toolCalls.map((c) => c.tool_call_id) };
  }

  /** The results of `pending`'s tool calls, from the `tool` messages of its session's next request. */
  private observe(pending: PendingStep, messages: ChatMessage[]): void {
    const results: AtifObservation['results'] = [];
    for (const id of pending.callIds) {
      // The last match: a rewritten history may repeat an id, and the newest message is this call's result.
      const message = messages.findLast((m) => m.role === 'tool' && m.tool_call_id === id);
      if (message) results.push({ source_call_id: id, content: textOf(message.content) });
    }
    if (results.length > 0) pending.step.observation = { results };
  }
}

/** A whole rollout's trajectory from its turns (see AtifBuilder to stream them). */
export function traceToAtif(
  trace: { rollout_id: string; result: RolloutResult; turns: Iterable<AtifTurn> },
  agent: AtifAgent,
): AtifTrajectory {
  const builder = new AtifBuilder(agent, trace.rollout_id);
  for (const turn of trace.turns) builder.add(turn);
  return builder.finish(trace.result);
}
