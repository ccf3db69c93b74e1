import { rolloutRequestSchema, rolloutResultSchema } from '../core/rollout/schema.js';
import { defineTool } from './tool.js';

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
    '(`error_kind`: cancelled, upstream, setup, verifier, sandbox or internal) when the rollout failed for reasons ' +
    'outside the agent. The full trace is an MCP resource at trace_uri. Takes minutes; sends progress notifications when asked.',
  inputSchema: rolloutRequestSchema,
  outputSchema: rolloutResultSchema,
  hints: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async handler(spec, { rollouts, episode, signal, progress }) {
    const result = await rollouts.run(spec, { signal, onProgress: progress });
    episode.recordRollout(result);
    return result;
  },
});
