import { z } from 'zod';
import { RolloutInputError } from '../core/rollout/run.js';
import type { RolloutSpec } from '../core/rollout/types.js';
import { defineTool, ToolInputError } from './define-tool.js';

/** OpenEnv's Python client sends "" and null for parameters it was not given: treat both as unset. */
const unsetIfBlank = <T extends z.ZodType>(schema: T) => z.preprocess((value) => (value === '' || value === null ? undefined : value), schema.optional());

const MAX_SCRIPT_CHARS = 1_000_000;

export const runRolloutInput = z
  .strictObject({
    instruction: z.string().trim().min(1, 'instruction must not be empty').describe('The task for the agent, as a user would type it'),
    task_id: unsetIfBlank(z.string().max(255)).describe('Your identifier for the task, echoed in the result and trace'),
    files: unsetIfBlank(z.record(z.string(), z.string())).describe('Files to create in the workdir before setup: relative path -> text content'),
    setup: unsetIfBlank(z.array(z.string().min(1))).describe('Bash commands run in the workdir before the agent; a failure aborts the rollout'),
    verify: unsetIfBlank(z.array(z.string().min(1))).describe('Bash commands run after the agent; reward = passed / total'),
    test_script: unsetIfBlank(z.string().max(MAX_SCRIPT_CHARS)).describe('A bash verifier script run after the agent; exit 0 gives reward 1.0, else 0.0'),
    endpoint: unsetIfBlank(z.enum(['vllm', 'openai', 'hf_router'])).describe(
      'Named endpoint configured by the server environment (VLLM_URL/VLLM_API_KEY/VLLM_MODEL, OPENAI_BASE_URL/OPENAI_API_KEY/OPENAI_MODEL, HF_ROUTER_BASE_URL/HF_ROUTER_API_KEY/HF_ROUTER_MODEL)',
    ),
    base_url: unsetIfBlank(z.string().url()).describe('OpenAI-compatible base URL ending in /v1 (overrides the endpoint)'),
    vllm_url: unsetIfBlank(z.string().url()).describe('Alias of base_url'),
    api_key: unsetIfBlank(z.string()).describe('API key for the endpoint; never stored or returned'),
    model: unsetIfBlank(z.string().min(1)).describe('Model name as the endpoint knows it'),
    mode: unsetIfBlank(z.enum(['transparent_proxy', 'black_box'])).describe(
      'transparent_proxy (default): record every LLM turn with token ids and logprobs; black_box: relay the traffic unchanged, record nothing',
    ),
    disable_thinking: unsetIfBlank(z.boolean()).describe('Send chat_template_kwargs.enable_thinking = false (Qwen-style thinking models)'),
    max_tokens_cap: unsetIfBlank(z.number().int().positive().max(1_000_000)).describe('Upper bound for max_tokens of every LLM call (default 4096)'),
    top_logprobs: unsetIfBlank(z.number().int().min(0).max(20)).describe('Alternatives recorded per token (default 5)'),
    agent_timeout_s: unsetIfBlank(z.number().positive().max(86_400)).describe('Seconds before the agent is killed (default 600)'),
    setup_timeout_s: unsetIfBlank(z.number().positive().max(86_400)).describe('Seconds allowed per setup command (default 120)'),
    verify_timeout_s: unsetIfBlank(z.number().positive().max(86_400)).describe('Seconds allowed per verifier command (default 120)'),
    template: unsetIfBlank(z.string()).describe('E2B sandbox template (recorded; the local backend ignores it)'),
  })
  .refine((input) => !(input.base_url && input.vllm_url && input.base_url !== input.vllm_url), {
    message: 'base_url and vllm_url are aliases: give one of them',
    path: ['vllm_url'],
  });

export type RunRolloutInput = z.infer<typeof runRolloutInput>;

const commandRecord = z.object({
  cmd: z.string(),
  exit_code: z.number().int().nullable(),
  stdout: z.string(),
  stderr: z.string(),
  duration_s: z.number(),
  timed_out: z.boolean(),
});

const rolloutResult = z.object({
  rollout_id: z.string(),
  task_id: z.string(),
  sandbox_id: z.string(),
  reward: z.number().nullable(),
  rewards: z.record(z.string(), z.number()),
  agent_exit_code: z.number().int().nullable(),
  agent_timed_out: z.boolean(),
  wall_s: z.number(),
  timings: z.record(z.string(), z.number()),
  mode: z.string(),
  endpoint: z.object({ name: z.string(), base_url: z.string(), model: z.string() }),
  template: z.string().nullable(),
  setup_results: z.array(commandRecord),
  verify_results: z.array(commandRecord),
  proxy_turns: z.array(z.record(z.string(), z.unknown())),
  agent_events: z.array(z.record(z.string(), z.unknown())),
  files: z.record(z.string(), z.string()),
  files_extra: z.array(z.string()),
  agent_log_tail: z.string(),
  proxy_log_tail: z.string(),
  error: z.string().nullable(),
  trace_uri: z.string().nullable(),
});

/** Applies defaults and the base_url alias: the spec the core runs. */
export function toRolloutSpec({ vllm_url, base_url, ...input }: RunRolloutInput): RolloutSpec {
  return {
    ...input,
    base_url: base_url ?? vllm_url,
    mode: input.mode ?? 'transparent_proxy',
    max_tokens_cap: input.max_tokens_cap ?? 4096,
    top_logprobs: input.top_logprobs ?? 5,
    agent_timeout_s: input.agent_timeout_s ?? 600,
    setup_timeout_s: input.setup_timeout_s ?? 120,
    verify_timeout_s: input.verify_timeout_s ?? 120,
  };
}

export const runRolloutTool = defineTool({
  name: 'run_rollout',
  title: 'Run a coding-agent rollout',
  description:
    'Run the OpenCode coding agent on a task in a fresh sandbox against an OpenAI-compatible model, then score it. ' +
    'Steps: stage `files`, run `setup`, run the agent on `instruction` in /home/user/workdir, run the verifier ' +
    '(`test_script` and/or `verify` commands), collect the files the agent wrote. The reward is, in order: a number the ' +
    'verifier wrote to /home/user/logs/verifier/reward.txt, or reward.json {"reward": x, ...}; else test_script exit ' +
    'code 0 -> 1.0, otherwise 0.0; else the share of verify commands that passed; else null. ' +
    'Choose the model with `endpoint` (configured on the server) or `base_url` + `model` (+ `api_key`). In ' +
    'transparent_proxy mode every LLM turn is recorded with token ids and logprobs. reward is null and `error` says why ' +
    'when the rollout failed for reasons outside the agent (endpoint down, setup failed, verifier timed out, cancelled). ' +
    'The full trace is an MCP resource at trace_uri. Takes minutes; sends progress notifications when asked.',
  inputSchema: runRolloutInput,
  outputSchema: rolloutResult,
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async handler(input, { rollouts, episode, signal, reportProgress }) {
    let step = 0;
    try {
      const result = await rollouts.run(toRolloutSpec(input), {
        signal,
        onProgress: (message) => void reportProgress(++step, message),
      });
      episode.recordRollout(result);
      return result;
    } catch (error) {
      if (error instanceof RolloutInputError) throw new ToolInputError(error.message);
      throw error;
    }
  },
});
