import { z } from 'zod';

/**
 * The OpenEnv wire shapes (openenv-core 0.2.3, see ../shared/reference/openenv.md), in one place: every OpenEnv route,
 * frame and JSON-RPC answer is parsed or typed by these. OpenEnv's pydantic models forbid extra keys on messages and
 * actions, so these are strict too.
 */

// ---- Actions (the `data` of a `step` frame, the `action` of POST /step) ----

/** Every OpenEnv Action carries an optional free-form `metadata` (pydantic `Action.metadata`). */
const actionMetadata = z.record(z.string(), z.unknown()).optional();

/** coding_env's CodeAction: routed to execute_python. */
export const codeActionSchema = z
  .strictObject({ code: z.string(), metadata: actionMetadata })
  .meta({ title: 'CodeAction', description: 'Represents a single code execution request.' });

export const listToolsActionSchema = z
  .strictObject({ type: z.literal('list_tools'), metadata: actionMetadata })
  .meta({ title: 'ListToolsAction', description: 'Request the list of available tools.' });

export const callToolActionSchema = z
  .strictObject({
    type: z.literal('call_tool'),
    tool_name: z.string(),
    arguments: z.record(z.string(), z.unknown()).default({}),
    metadata: actionMetadata,
  })
  .meta({ title: 'CallToolAction', description: 'Call a tool by name with arguments.' });

/** What a step may carry: an MCP action (told apart by `type`, as OpenEnv's deserialize_action does) or a code action. */
export const stepActionSchema = z.union([listToolsActionSchema, callToolActionSchema, codeActionSchema]);

type CodeAction = z.infer<typeof codeActionSchema>;
type ListToolsAction = z.infer<typeof listToolsActionSchema>;
type CallToolAction = z.infer<typeof callToolActionSchema>;
export type StepAction = CodeAction | ListToolsAction | CallToolAction;

// ---- Observations ----

/** coding_env's CodeObservation on the wire: exactly these three (CodingEnv builds it with `CodeObservation(**obs)`, extra=forbid). */
export const codeObservationSchema = z
  .strictObject({ stdout: z.string().default(''), stderr: z.string().default(''), exit_code: z.number().int().default(0) })
  .meta({ title: 'CodeObservation', description: 'Result of executing code in the environment.' });
export type CodeObservation = z.infer<typeof codeObservationSchema>;

/** An OpenEnv Tool: snake_case `input_schema` (not MCP's `inputSchema`). */
const openEnvToolSchema = z.strictObject({
  name: z.string(),
  description: z.string(),
  input_schema: z.record(z.string(), z.unknown()),
});
export type OpenEnvTool = z.infer<typeof openEnvToolSchema>;

export const listToolsObservationSchema = z.strictObject({ tools: z.array(openEnvToolSchema) }).meta({ title: 'ListToolsObservation' });
export type ListToolsObservation = z.infer<typeof listToolsObservationSchema>;

/** One MCP text content block as FastMCP serialises it (`annotations` and `meta` present, null). */
const textContentSchema = z.strictObject({ type: z.literal('text'), text: z.string(), annotations: z.null(), meta: z.null() });

/** FastMCP's `CallToolResult` dataclass as OpenEnv JSON-ifies it: snake_case, `data` the tool's native value. */
const callToolResultSchema = z.strictObject({
  content: z.array(textContentSchema),
  structured_content: z.record(z.string(), z.unknown()).nullable(),
  meta: z.record(z.string(), z.unknown()).nullable(),
  data: z.unknown(),
  is_error: z.boolean(),
});
export type CallToolResultJson = z.infer<typeof callToolResultSchema>;

const TOOL_ERROR_TYPES = ['execution_error', 'invalid_args', 'transport_error', 'tool_not_found', 'timeout'] as const;
const toolErrorSchema = z.strictObject({ error_type: z.enum(TOOL_ERROR_TYPES), message: z.string() });
export type ToolError = z.infer<typeof toolErrorSchema>;

export const callToolObservationSchema = z
  .strictObject({ tool_name: z.string(), result: callToolResultSchema.nullable(), error: toolErrorSchema.nullable() })
  .meta({ title: 'CallToolObservation' });
export type CallToolObservation = z.infer<typeof callToolObservationSchema>;

/** One named reward of a rollout, as OpenEnv's multi-reward RFC names them. */
const rewardComponentSchema = z.strictObject({ name: z.string(), value: z.number() });
export type RewardComponent = z.infer<typeof rewardComponentSchema>;

/**
 * `serialize_observation`'s output: the observation without reward/done/metadata, those lifted beside it. OpenEnv drops
 * metadata; we add a top-level `metadata` only on rollout steps (for `reward_components`), where MCPToolClient's
 * `_parse_result` reads it (`payload.get("metadata")`) and CodingEnv ignores it.
 */
export const serializedObservationSchema = z.strictObject({
  observation: z.record(z.string(), z.unknown()),
  reward: z.number().nullable(),
  done: z.boolean(),
  metadata: z.strictObject({ reward_components: z.array(rewardComponentSchema) }).optional(),
});
export type SerializedObservation = z.infer<typeof serializedObservationSchema>;

/** OpenEnv's base State (extra=allow): episode_id and step_count, whatever else the env adds. */
export const baseStateSchema = z
  .looseObject({
    episode_id: z.string().nullable().default(null).describe('Unique identifier for the current episode'),
    step_count: z.number().int().min(0).default(0).describe('Number of steps taken in the current episode'),
  })
  .meta({ title: 'State' });

// ---- WebSocket /ws frames ----

const frameData = z.record(z.string(), z.unknown());

/** Client → server frames; each model forbids unknown keys (→ VALIDATION_ERROR). */
export const wsClientFrameSchemas = {
  reset: z.strictObject({ type: z.literal('reset'), data: frameData.default({}) }),
  step: z.strictObject({ type: z.literal('step'), data: frameData }),
  state: z.strictObject({ type: z.literal('state') }),
  close: z.strictObject({ type: z.literal('close') }),
  mcp: z.strictObject({ type: z.literal('mcp'), data: frameData }),
} as const;
export type WsClientFrameType = keyof typeof wsClientFrameSchemas;

const WS_ERROR_CODES = [
  'INVALID_JSON',
  'UNKNOWN_TYPE',
  'VALIDATION_ERROR',
  'EXECUTION_ERROR',
  'CAPACITY_REACHED',
  'FACTORY_ERROR',
  'SESSION_ERROR',
] as const;
export type WsErrorCode = (typeof WS_ERROR_CODES)[number];

/** A pydantic-style validation error (`{type, loc, msg, input}`), as 422 bodies and VALIDATION_ERROR frames carry them. */
export interface ValidationIssue {
  type: string;
  loc: Array<string | number>;
  msg: string;
  input: unknown;
}

/** Server → client frames. */
export const wsServerFrameSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('observation'), data: serializedObservationSchema }),
  z.strictObject({ type: z.literal('state'), data: baseStateSchema }),
  z.strictObject({ type: z.literal('mcp'), data: z.record(z.string(), z.unknown()) }),
  z.strictObject({
    type: z.literal('error'),
    data: z.looseObject({ message: z.string(), code: z.enum(WS_ERROR_CODES) }),
  }),
]);
export type WsServerFrame = z.infer<typeof wsServerFrameSchema>;

// ---- REST bodies ----

/** POST /reset (extra=allow: other kwargs are accepted and, as OpenEnv filters them by signature, ignored). */
export const resetBodySchema = z.looseObject({
  seed: z.number().int().min(0).nullable().optional(),
  episode_id: z.string().max(255).nullable().optional(),
});

/** POST /step (extra=allow). */
export const stepBodySchema = z.looseObject({
  action: z.record(z.string(), z.unknown()),
  timeout_s: z.number().positive().nullable().optional(),
  request_id: z.string().max(255).nullable().optional(),
});

// ---- JSON-RPC (POST /mcp, WebSocket /mcp, the `mcp` frame) ----

/** `params` is checked apart (a non-object is -32602, not -32600), so the model takes anything there. */
export const jsonRpcRequestSchema = z.strictObject({
  jsonrpc: z.literal('2.0'),
  method: z.string(),
  params: z.unknown().optional(),
  id: z.union([z.string(), z.number().int(), z.null()]).optional(),
});
export type JsonRpcId = string | number | null;

const jsonRpcErrorSchema = z.strictObject({ code: z.number().int(), message: z.string(), data: z.unknown() });
export const jsonRpcResponseSchema = z.union([
  z.strictObject({ jsonrpc: z.literal('2.0'), id: z.union([z.string(), z.number(), z.null()]), result: z.unknown() }),
  z.strictObject({ jsonrpc: z.literal('2.0'), id: z.union([z.string(), z.number(), z.null()]), error: jsonRpcErrorSchema }),
]);

export const JSON_RPC = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  SERVER_ERROR: -32000,
} as const;

// ---- Validation errors in pydantic's shape ----

const ISSUE_TYPES: Record<string, string> = {
  invalid_type: 'type_error',
  unrecognized_keys: 'extra_forbidden',
  too_small: 'value_error',
  too_big: 'value_error',
  invalid_value: 'literal_error',
  invalid_union: 'union_error',
};

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input;
  for (const key of path) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

/**
 * zod issues as pydantic errors (`loc` prefixed with `locPrefix`, e.g. ['body']): what FastAPI's 422 `detail` and
 * OpenEnv's VALIDATION_ERROR `errors` hold. A missing field is `missing`; an unknown key one `extra_forbidden` per key.
 */
/** Echoed inputs are capped: a huge or deeply nested value (a hostile body) must not make the answer itself fail. */
const ECHO_LIMIT_CHARS = 2048;

function boundedEcho(value: unknown): unknown {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    return '[not echoed: nested too deeply]';
  }
  return text === undefined || text.length <= ECHO_LIMIT_CHARS ? value : `[not echoed: ${text.length} characters]`;
}

export function toValidationIssues(error: z.ZodError, input: unknown, locPrefix: Array<string | number> = []): ValidationIssue[] {
  return error.issues.flatMap((issue): ValidationIssue[] => {
    const path = issue.path.filter((key): key is string | number => typeof key !== 'symbol');
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({
        type: 'extra_forbidden',
        loc: [...locPrefix, ...path, key],
        msg: 'Extra inputs are not permitted',
        input: boundedEcho(valueAt(input, [...path, key])),
      }));
    }
    const value = valueAt(input, path);
    const missing = issue.code === 'invalid_type' && value === undefined;
    return [
      {
        type: missing ? 'missing' : (ISSUE_TYPES[issue.code] ?? issue.code),
        loc: [...locPrefix, ...path],
        msg: missing ? 'Field required' : issue.message,
        input: boundedEcho(value),
      },
    ];
  });
}
