import { z } from 'zod';
import { INFRASTRUCTURE_ERROR_KINDS } from '../../errors.js';
import { proxyTurnSummarySchema } from '../proxy/types.js';
import { fieldWithDefault, optionalField } from '../schema-fields.js';
import { ENDPOINT_NAMES } from './endpoints.js';

/**
 * The wire shapes of a rollout: what run_rollout accepts (with its defaults applied, that is the spec the
 * runner executes) and what it returns. Every transport publishes and parses exactly these.
 */

const MAX_SCRIPT_CHARS = 1_000_000;
const MAX_SECONDS = 86_400;

const ROLLOUT_DEFAULTS = {
  mode: 'transparent_proxy',
  max_tokens_cap: 4096,
  top_logprobs: 5,
  agent_timeout_s: 600,
  setup_timeout_s: 120,
  verify_timeout_s: 120,
  allow_internet: true,
  auto_compact: false,
} as const;

const rolloutModeSchema = z.enum(['transparent_proxy', 'black_box']);

/**
 * Any URL `new URL()` parses. Not `z.url()`: that publishes `format: "uri"`, which is ASCII-only, so a
 * client validating against the schema would refuse hosts and paths the server accepts.
 */
const absoluteUrl = z.string().refine((value) => URL.canParse(value), 'must be an absolute URL');

export const rolloutRequestSchema = z
  .strictObject({
    instruction: z.string().trim().min(1, 'instruction must not be empty').describe('The task for the agent, as a user would type it'),
    task_id: optionalField(z.string().max(255), 'Your identifier for the task, echoed in the result and trace'),
    files: optionalField(z.record(z.string(), z.string()), 'Files to create in the workdir before setup: relative path -> text content'),
    setup: optionalField(z.array(z.string().min(1)), 'Bash commands run in the workdir before the agent; a failure aborts the rollout'),
    verify: optionalField(z.array(z.string().min(1)), 'Bash commands run after the agent; reward = passed / total'),
    test_script: optionalField(
      z.string().max(MAX_SCRIPT_CHARS),
      'A bash verifier script run after the agent; exit 0 gives reward 1.0, else 0.0',
    ),
    endpoint: optionalField(
      z.enum(ENDPOINT_NAMES),
      'Named endpoint configured by the server environment (VLLM_URL/VLLM_API_KEY/VLLM_MODEL, ' +
        'OPENAI_BASE_URL/OPENAI_API_KEY/OPENAI_MODEL, HF_ROUTER_BASE_URL/HF_ROUTER_API_KEY/HF_ROUTER_MODEL)',
    ),
    base_url: optionalField(absoluteUrl, 'OpenAI-compatible base URL ending in /v1 (overrides the endpoint)'),
    vllm_url: optionalField(absoluteUrl, 'Alias of base_url'),
    api_key: optionalField(z.string(), 'API key for the endpoint; never stored or returned'),
    model: optionalField(z.string().min(1), 'Model name as the endpoint knows it'),
    mode: fieldWithDefault(
      rolloutModeSchema,
      ROLLOUT_DEFAULTS.mode,
      'transparent_proxy: record every LLM turn with token ids and logprobs; black_box: relay the traffic unchanged, record nothing',
    ),
    disable_thinking: optionalField(z.boolean(), 'Send chat_template_kwargs.enable_thinking = false (Qwen-style thinking models)'),
    max_tokens_cap: fieldWithDefault(
      z.number().int().positive().max(1_000_000),
      ROLLOUT_DEFAULTS.max_tokens_cap,
      'Upper bound for max_tokens of every LLM call',
    ),
    top_logprobs: fieldWithDefault(z.number().int().min(0).max(20), ROLLOUT_DEFAULTS.top_logprobs, 'Alternatives recorded per token'),
    agent_timeout_s: fieldWithDefault(
      z.number().positive().max(MAX_SECONDS),
      ROLLOUT_DEFAULTS.agent_timeout_s,
      'Seconds before the agent is killed',
    ),
    setup_timeout_s: fieldWithDefault(
      z.number().positive().max(MAX_SECONDS),
      ROLLOUT_DEFAULTS.setup_timeout_s,
      'Seconds allowed per setup command',
    ),
    verify_timeout_s: fieldWithDefault(
      z.number().positive().max(MAX_SECONDS),
      ROLLOUT_DEFAULTS.verify_timeout_s,
      'Seconds allowed per verifier command',
    ),
    template: optionalField(z.string(), 'Sandbox template (E2B); the local backend records it and ignores it'),
    workdir: optionalField(
      z
        .string()
        .max(200)
        .regex(/^\/[A-Za-z0-9._/-]*$/, 'an absolute path of letters, digits, ".", "_", "-" and "/"')
        .refine((p) => !p.split('/').includes('..') && !/^\/(proc|sys|dev|tests|logs|opt\/opencode-env)?(\/|$)/.test(p), {
          message: 'not /, .., nor under /proc, /sys, /dev, /tests, /logs or /opt/opencode-env',
        }),
      "Absolute working directory the agent and verifier run in (E2B: a template's WORKDIR, e.g. a Harbor task's /app); default the sandbox's own. The local backend's is fixed",
    ),
    auto_compact: fieldWithDefault(
      z.boolean(),
      ROLLOUT_DEFAULTS.auto_compact,
      'Let opencode compact and prune its history when its context fills up. Off by default: either rewrites what the ' +
        "model saw, which splits the session's turns into separate training sequences",
    ),
    max_llm_calls: optionalField(
      z.number().int().positive().max(100_000),
      "The agent's LLM calls at most (opencode's title calls do not count); its next call gets a final answer that ends the run",
    ),
    max_total_tokens: optionalField(
      z.number().int().positive().max(1_000_000_000),
      "Tokens (prompt + completion, as the endpoint reports them) the agent's calls may use; past it, its next call gets a final answer. Needs mode transparent_proxy",
    ),
    allow_internet: fieldWithDefault(
      z.boolean(),
      ROLLOUT_DEFAULTS.allow_internet,
      "Whether the sandbox may reach the internet (E2B's allowInternetAccess). The agent's LLM calls never need it: they " +
        'go through the server. The local backend follows OPENCODE_ENV_SANDBOX_NETWORK instead',
    ),
    // Harbor tasks (src/core/harbor/) map onto these.
    verifier_files: optionalField(
      z.record(z.string(), z.string()),
      'Files for the verifier only, written after the agent has finished: absolute path under /tests -> text content ' +
        "(a Harbor task's tests/). Verifier commands also see the reward dir at /logs/verifier",
    ),
    verifier_env: optionalField(z.record(z.string(), z.string()), 'Environment variables of the verifier commands'),
    agent: fieldWithDefault(
      z.enum(['opencode', 'oracle']),
      'opencode',
      'opencode: the model solves the task through opencode; oracle: oracle_script runs instead (no LLM), to validate a task',
    ),
    oracle_script: optionalField(
      z.string().max(MAX_SCRIPT_CHARS),
      "The bash script agent 'oracle' runs in the workdir, with agent_timeout_s (a Harbor task's solution/solve.sh)",
    ),
    environment_needs: optionalField(
      z.string().max(10_000),
      "What the task needs of its sandbox beyond a plain Linux with Python (e.g. a Harbor task's Docker image): the local " +
        'backend refuses such a task before it starts; E2B needs a template for it',
    ),
  })
  .refine((input) => input.agent !== 'oracle' || input.oracle_script !== undefined, {
    message: "agent 'oracle' needs oracle_script",
    path: ['oracle_script'],
  })
  .refine((input) => !(input.base_url && input.vllm_url && input.base_url !== input.vllm_url), {
    message: 'base_url and vllm_url are aliases: give one of them',
    path: ['vllm_url'],
  })
  .transform(({ vllm_url, base_url, ...rest }) => {
    const url = base_url ?? vllm_url;
    return { ...rest, ...(url !== undefined ? { base_url: url } : {}) };
  });

/** What the runner executes: the request with defaults applied and the base_url alias resolved. */
export type RolloutSpec = z.output<typeof rolloutRequestSchema>;

const commandRecordSchema = z
  .object({
    cmd: z.string(),
    exit_code: z.number().int().nullable().describe('null when the command was killed (time limit or cancellation)'),
    stdout: z.string(),
    stderr: z.string(),
    duration_s: z.number(),
    timed_out: z.boolean(),
  })
  .meta({ title: 'CommandRecord', description: 'One setup or verifier command and what it printed (each stream capped at 64 KiB)' });

/** `install` appears only when the sandbox lacked opencode and got it installed. */
const ROLLOUT_PHASES = ['queue', 'sandbox', 'files', 'setup', 'install', 'proxy', 'agent', 'verify', 'collect', 'trace'] as const;
export type RolloutPhase = (typeof ROLLOUT_PHASES)[number];

export const rolloutResultSchema = z
  .object({
    rollout_id: z.string().describe('Unique id of this rollout; names its trace'),
    task_id: z.string().describe('The task_id given, or ""'),
    sandbox_id: z.string().describe('The rollout\'s own sandbox, or "" when none was created'),
    warm_start: z.boolean().describe('The agent came from the warm pool (OPENCODE_ENV_WARM_POOL): opencode was started before the rollout'),
    reward: z
      .number()
      .nullable()
      .describe('null when there was no verifier, or the rollout failed for reasons outside the agent (see error)'),
    rewards: z.record(z.string(), z.number()).describe("Further named rewards from the verifier's reward.json"),
    agent_exit_code: z.number().int().nullable().describe("opencode's exit code; null when it was killed or never ran"),
    agent_timed_out: z.boolean().describe('The agent was killed at agent_timeout_s (its work is still verified)'),
    budget_exhausted: z
      .enum(['max_llm_calls', 'max_total_tokens'])
      .nullable()
      .describe('The budget that ended the run (a call past it got a final answer); its work is still verified'),
    wall_s: z.number().describe('Seconds from the call to the result, queueing included'),
    timings: z.partialRecord(z.enum(ROLLOUT_PHASES), z.number()).describe('Seconds spent in each phase'),
    mode: rolloutModeSchema.describe('transparent_proxy (turns recorded) or black_box (traffic relayed only)'),
    endpoint: z.object({ name: z.string(), base_url: z.string(), model: z.string() }).describe('The LLM endpoint used (never the key)'),
    template: z.string().nullable().describe('The sandbox template asked for, if any'),
    setup_results: z.array(commandRecordSchema).describe('Each setup command, in order, up to the first that failed'),
    verify_results: z.array(commandRecordSchema).describe('Each verifier command (test_script first), in order'),
    proxy_turns: z.array(proxyTurnSummarySchema).describe('Every LLM call, in order (empty in black_box mode)'),
    agent_events: z.array(z.record(z.string(), z.unknown())).describe("opencode's JSON events (opencode run --format json)"),
    files: z.record(z.string(), z.string()).describe('Workdir text files up to 64 KiB each, 1 MiB in all: path -> content'),
    files_extra: z.array(z.string()).describe('Files named but not included: binary, larger, symlinks, or past the total cap'),
    agent_log_tail: z.string().describe("The end of opencode's stderr, non-JSON output and error events"),
    proxy_log_tail: z.string().describe("The end of the recording proxy's log (upstream failures, refused fields)"),
    error: z.string().nullable().describe('Why the rollout could not produce a trustworthy reward; null when it could'),
    error_kind: z
      .enum([...INFRASTRUCTURE_ERROR_KINDS, 'interrupted'])
      .nullable()
      .describe(
        'What failed, for filtering without parsing error: cancelled, upstream, setup, verifier, sandbox or internal; ' +
          'interrupted only appears in stored traces, for a rollout whose server stopped (e.g. was killed) before it finished',
      ),
    trace_uri: z.string().nullable().describe('MCP resource URI of the full trace'),
  })
  .meta({ title: 'RolloutResult', description: 'The outcome of one run_rollout: reward, LLM turns, verifier output and files' });

export type CommandRecord = z.infer<typeof commandRecordSchema>;
export type RolloutResult = z.infer<typeof rolloutResultSchema>;

/** A result before anything has happened: no reward, nothing run, nothing recorded. */
export function blankRolloutResult(
  fields: Pick<RolloutResult, 'rollout_id' | 'task_id' | 'mode' | 'endpoint' | 'template'>,
): RolloutResult {
  return {
    ...fields,
    sandbox_id: '',
    warm_start: false,
    reward: null,
    rewards: {},
    agent_exit_code: null,
    agent_timed_out: false,
    budget_exhausted: null,
    wall_s: 0,
    timings: {},
    setup_results: [],
    verify_results: [],
    proxy_turns: [],
    agent_events: [],
    files: {},
    files_extra: [],
    agent_log_tail: '',
    proxy_log_tail: '',
    error: null,
    error_kind: null,
    trace_uri: null,
  };
}
