import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createRuntime } from '../runtime.js';
import { loadScript } from '../scripted-llm/script.js';
import { startScriptedLlm, type ScriptedLlm } from '../scripted-llm/server.js';
import { runRolloutInput, toRolloutSpec } from '../tools/run-rollout.js';

export interface RolloutCommandOptions {
  task: string;
  scriptedLlm?: string;
  endpoint?: string;
  baseUrl?: string;
  model?: string;
  apiKeyEnv?: string;
  mode?: string;
  agentTimeout?: string;
  json?: boolean;
}

/**
 * `opencode-env rollout`: one rollout of a task file on the local sandbox, without an MCP client.
 * With --scripted-llm the model is the offline scripted server, so it runs anywhere with no key.
 */
export async function runRolloutCommand(options: RolloutCommandOptions): Promise<number> {
  const task = JSON.parse(await readFile(options.task, 'utf8')) as Record<string, unknown>;
  let scripted: ScriptedLlm | null = null;
  const overrides: Record<string, unknown> = {};
  if (options.scriptedLlm) {
    scripted = await startScriptedLlm({ script: await loadScript(options.scriptedLlm) });
    Object.assign(overrides, { base_url: scripted.url, model: 'scripted-model', endpoint: undefined });
  }
  if (options.endpoint) overrides.endpoint = options.endpoint;
  if (options.baseUrl) overrides.base_url = options.baseUrl;
  if (options.model) overrides.model = options.model;
  if (options.mode) overrides.mode = options.mode;
  if (options.agentTimeout) overrides.agent_timeout_s = Number(options.agentTimeout);
  if (options.apiKeyEnv) {
    const key = process.env[options.apiKeyEnv];
    if (!key) throw new Error(`--api-key-env ${options.apiKeyEnv}: that environment variable is not set`);
    overrides.api_key = key;
  }
  const parsed = runRolloutInput.safeParse({ ...task, ...overrides });
  if (!parsed.success) {
    throw new Error(`invalid task ${options.task}: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(task)'}: ${i.message}`).join('; ')}`);
  }

  const runtime = createRuntime();
  if (scripted) runtime.lifecycle.onShutdown('scripted model', () => scripted!.close());
  const abort = new AbortController();
  runtime.lifecycle.onShutdown('rollout', async () => abort.abort());
  const result = await runtime.rollouts.run(toRolloutSpec(parsed.data), {
    signal: abort.signal,
    onProgress: (message) => process.stderr.write(`opencode-env: ${message}\n`),
  });
  await scripted?.close();

  if (options.json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } else {
    const agentTurns = result.proxy_turns.filter((t) => t.kind === 'agent').length;
    const lines = [
      `task:      ${result.task_id || path.basename(options.task)}`,
      `reward:    ${result.reward === null ? 'null' : result.reward.toFixed(2)}${Object.keys(result.rewards).length ? ` ${JSON.stringify(result.rewards)}` : ''}`,
      `turns:     ${result.proxy_turns.length} LLM turns (${agentTurns} agent steps)`,
      `agent:     exit ${result.agent_exit_code ?? '-'}${result.agent_timed_out ? ' (timed out)' : ''}, ${result.agent_events.length} events`,
      `verifier:  ${result.verify_results.map((r) => `exit ${r.exit_code ?? 'killed'}`).join(', ') || 'none'}`,
      `files:     ${Object.keys(result.files).join(', ') || '-'}`,
      `wall time: ${result.wall_s.toFixed(2)} s (${Object.entries(result.timings).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')})`,
      `trace:     ${result.trace_uri ?? 'not stored'}${result.trace_uri ? ` (${path.join(runtime.traces.dir, `${result.rollout_id}.json`)})` : ''}`,
    ];
    if (result.error) lines.push(`error:     ${result.error}`);
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  await runtime.provider.killAll();
  return result.error ? 1 : 0;
}
