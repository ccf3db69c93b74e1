import type { z } from 'zod';
import type { EpisodeState } from '../../core/episode-schema.js';
import type { ClassifiedError } from '../../errors.js';
import { mcpToolListing } from '../../mcp/tools.js';
import { callTool, type ToolOutcome } from '../../tools/call-tool.js';
import { executePythonTool } from '../../tools/execute-python.js';
import { getStateTool } from '../../tools/get-state.js';
import { findTool } from '../../tools/index.js';
import { resetTool } from '../../tools/reset.js';
import { runRolloutTool } from '../../tools/run-rollout.js';
import type { CallContext, ToolDefinition } from '../../tools/tool.js';
import type { HttpSession } from '../http/sessions.js';
import {
  stepActionSchema,
  toValidationIssues,
  type CallToolObservation,
  type CallToolResultJson,
  type CodeObservation,
  type ListToolsObservation,
  type OpenEnvTool,
  type RewardComponent,
  type SerializedObservation,
  type StepAction,
  type ToolError,
  type ValidationIssue,
} from './wire.js';

/**
 * OpenEnv's verbs (reset, step, state) as tool calls on one session, answered in OpenEnv's shapes. Every transport of
 * the OpenEnv surface (REST, /ws, JSON-RPC) goes through here, so they all answer alike.
 */

/** A reset, step or state that could not be carried out: /ws answers EXECUTION_ERROR, REST a 4xx/500. */
export class OpenEnvActionError extends Error {
  constructor(readonly error: ClassifiedError) {
    super(error.message);
    this.name = 'OpenEnvActionError';
  }
}

export interface StepOptions {
  /** Aborted when the client goes away (or a REST step's timeout_s passes). */
  signal?: AbortSignal;
  /** POST /step's `timeout_s`: a code action's execute_python timeout; the deadline of a tool call. */
  timeoutS?: number;
}

/** What reset answers, as coding_env does: an empty CodeObservation (MCPToolClient reads it as a generic one), reward 0. */
const RESET_OBSERVATION: CodeObservation = { stdout: '', stderr: '', exit_code: 0 };

const never = new AbortController().signal;

/** Runs one tool on the session, marked in flight so the idle reaper leaves a long rollout alone. */
async function runTool<Input extends z.ZodType, Output extends z.ZodObject>(
  entry: HttpSession,
  tool: ToolDefinition<Input, Output>,
  args: unknown,
  signal: AbortSignal = never,
): Promise<ToolOutcome<z.infer<Output>>> {
  const end = entry.begin();
  try {
    const call: CallContext = {
      signal,
      progress: (message) => entry.session.services.logger.debug({ tool: tool.name, message }, 'progress'),
    };
    return await callTool(tool, args, entry.session.services, call);
  } finally {
    end();
  }
}

function valueOf<T>(outcome: ToolOutcome<T>): T {
  if (!outcome.ok) throw new OpenEnvActionError(outcome.error);
  return outcome.value;
}

/** The tools as OpenEnv lists them: MCP's listing (one conversion of the schemas) with snake_case `input_schema`. */
function openEnvToolListing(): OpenEnvTool[] {
  return mcpToolListing().map((tool) => ({ name: tool.name, description: tool.description ?? '', input_schema: tool.inputSchema }));
}

/**
 * `data` is what MCPToolClient.call_tool returns (`result["data"]`). run_rollout's is the RolloutResult JSON *text*:
 * the opencode env's tool returns a string and its client parses it with `RolloutResult.model_validate_json`. The other
 * tools' is the structured value, as FastMCP gives for a tool whose output schema is an object (a dict in Python).
 */
function dataOf(toolName: string, value: Record<string, unknown>, text: string): unknown {
  return toolName === runRolloutTool.name ? text : value;
}

/** A successful call as FastMCP's CallToolResult JSON (snake_case); the text block is the value's JSON, as MCP sends it. */
function callToolResultJson(toolName: string, value: Record<string, unknown>): CallToolResultJson {
  const text = JSON.stringify(value);
  return {
    content: [{ type: 'text', text, annotations: null, meta: null }],
    structured_content: value,
    meta: null,
    data: dataOf(toolName, value, text),
    is_error: false,
  };
}

/** §2: OpenEnv picks error_type by the failure; ours are classified already. */
function toolErrorOf(error: ClassifiedError, timedOut: boolean): ToolError {
  if (timedOut) return { error_type: 'timeout', message: error.message };
  return { error_type: error.class === 'invalid_input' ? 'invalid_args' : 'execution_error', message: error.message };
}

/**
 * A rollout's named rewards (`rewards`, from the verifier's reward.json), as the multi-reward RFC lists them. They go in
 * the top-level `metadata` of the step's answer: MCPToolClient's `_parse_result` reads `payload["metadata"]` into the
 * StepResult and the observation, and never looks inside `observation` beyond tool_name/result/error.
 */
function rewardComponents(value: Record<string, unknown>): RewardComponent[] {
  const rewards = (value.rewards ?? {}) as Record<string, number>;
  return Object.entries(rewards).map(([name, reward]) => ({ name, value: reward }));
}

async function listTools(): Promise<SerializedObservation> {
  const observation: ListToolsObservation = { tools: openEnvToolListing() };
  return { observation, reward: null, done: false };
}

async function callToolAction(entry: HttpSession, toolName: string, args: unknown, options: StepOptions): Promise<SerializedObservation> {
  const tool = findTool(toolName);
  if (!tool) {
    const observation: CallToolObservation = {
      tool_name: toolName,
      result: null,
      error: { error_type: 'tool_not_found', message: `Tool '${toolName}' not found` },
    };
    return { observation, reward: null, done: false };
  }
  const deadline = options.timeoutS !== undefined ? AbortSignal.timeout(options.timeoutS * 1000) : undefined;
  const signal = deadline ? AbortSignal.any([options.signal ?? never, deadline]) : options.signal;
  const outcome = await runTool(entry, tool, args, signal);
  if (!outcome.ok) {
    const observation: CallToolObservation = {
      tool_name: toolName,
      result: null,
      error: toolErrorOf(outcome.error, deadline?.aborted ?? false),
    };
    return { observation, reward: null, done: false };
  }
  const observation: CallToolObservation = { tool_name: toolName, result: callToolResultJson(toolName, outcome.value), error: null };
  if (tool.name !== runRolloutTool.name) return { observation, reward: null, done: false };
  // A rollout's step is scored: its reward is the step's reward (null when the rollout failed outside the agent).
  const reward = typeof outcome.value.reward === 'number' ? outcome.value.reward : null;
  const components = rewardComponents(outcome.value);
  return { observation, reward, done: false, ...(components.length > 0 ? { metadata: { reward_components: components } } : {}) };
}

/**
 * coding_env's step: execute_python, answered with exactly stdout, stderr and exit_code (CodingEnv forbids more). The
 * reward is null: coding_env's reward comes from its own heuristics (a length bonus, a penalty for `import os`), which
 * would mislead a trainer here; CodingEnv's client reads `reward` as an optional float, so null is accepted.
 */
async function runCode(entry: HttpSession, code: string, options: StepOptions): Promise<SerializedObservation> {
  const args = { code, ...(options.timeoutS !== undefined ? { timeout_s: options.timeoutS } : {}) };
  const { stdout, stderr, exit_code } = valueOf(await runTool(entry, executePythonTool, args, options.signal));
  const observation: CodeObservation = { stdout, stderr, exit_code };
  return { observation, reward: null, done: false };
}

export type ParsedAction = { ok: true; action: StepAction } | { ok: false; issues: ValidationIssue[] };

/**
 * A step's action, told apart as OpenEnv's deserialize_action does: `type` list_tools/call_tool is an MCP action,
 * anything else must be a CodeAction. Unknown keys are refused (OpenEnv's actions are extra=forbid).
 */
export function parseStepAction(data: unknown, locPrefix: Array<string | number> = []): ParsedAction {
  const parsed = stepActionSchema.safeParse(data);
  if (parsed.success) return { ok: true, action: parsed.data };
  // Report against the one model that applies, not the whole union.
  const type = (data as { type?: unknown } | null)?.type;
  const option = type === 'list_tools' ? 0 : type === 'call_tool' ? 1 : 2;
  const single = stepActionSchema.options[option].safeParse(data);
  const error = single.success ? parsed.error : single.error;
  return { ok: false, issues: toValidationIssues(error, data, locPrefix) };
}

export async function stepSession(entry: HttpSession, action: StepAction, options: StepOptions = {}): Promise<SerializedObservation> {
  if ('code' in action) return runCode(entry, action.code, options);
  if (action.type === 'list_tools') return listTools();
  return callToolAction(entry, action.tool_name, action.arguments, options);
}

/**
 * A new episode. As OpenEnv filters reset kwargs by the env's signature, only `seed` and `episode_id` are taken and
 * other keys are ignored; an invalid seed or episode_id is refused (OpenEnvActionError, invalid_input).
 */
export async function resetSession(entry: HttpSession, data: Record<string, unknown> = {}): Promise<SerializedObservation> {
  const args: Record<string, unknown> = {};
  if (data.seed !== undefined) args.seed = data.seed;
  if (data.episode_id !== undefined) args.episode_id = data.episode_id;
  valueOf(await runTool(entry, resetTool, args));
  return { observation: { ...RESET_OBSERVATION }, reward: 0, done: false };
}

/** OpenEnv's State: episode_id and step_count (same names), plus the rest of get_state (State is extra=allow). */
export async function sessionState(entry: HttpSession): Promise<EpisodeState> {
  return valueOf(await runTool(entry, getStateTool, {}));
}

/** A tool call for JSON-RPC `tools/call`: its CallToolResult JSON, or the failure (JSON-RPC answers -32603 with it). */
export async function callToolForJsonRpc(
  entry: HttpSession,
  toolName: string,
  args: unknown,
): Promise<{ ok: true; result: CallToolResultJson } | { ok: false; message: string }> {
  const tool = findTool(toolName);
  if (!tool) return { ok: false, message: `Unknown tool: ${toolName}` };
  const outcome = await runTool(entry, tool, args);
  if (!outcome.ok) return { ok: false, message: `${toolName}: ${outcome.error.message}` };
  return { ok: true, result: callToolResultJson(toolName, outcome.value) };
}
