import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { loadConfig, type Config } from '../config.js';
import { harborRolloutArguments } from '../core/harbor/dataset.js';
import { loadHarborTask } from '../core/harbor/task.js';
import type { RolloutResult } from '../core/rollout/schema.js';
import { InvalidInputError } from '../errors.js';
import { createLogger } from '../log.js';
import { createRuntime, type Runtime } from '../runtime.js';
import { loadScript } from '../scripted-llm/script.js';
import { startScriptedLlm, type ScriptedLlm } from '../scripted-llm/server.js';
import { openSession } from '../session.js';
import { callTool } from '../tools/call-tool.js';
import { runRolloutTool } from '../tools/run-rollout.js';
import { prepareHarborTemplates } from './harbor-templates.js';

export interface RolloutCommandOptions {
  /** Exactly one of `task` (a task JSON file) and `harbor` (a Harbor task directory). */
  task?: string;
  harbor?: string;
  agent?: string;
  scriptedLlm?: string;
  endpoint?: string;
  baseUrl?: string;
  model?: string;
  apiKeyEnv?: string;
  mode?: string;
  agentTimeout?: string;
  json?: boolean;
}

/** The task file's arguments with the command line's overrides on top: run_rollout's arguments. */
async function rolloutArguments(
  options: RolloutCommandOptions,
  scripted: ScriptedLlm | null,
  config: Config,
): Promise<Record<string, unknown>> {
  if (Boolean(options.task) === Boolean(options.harbor)) throw new InvalidInputError('give one of --task <file> and --harbor <dir>');
  let task: Record<string, unknown>;
  if (options.harbor) {
    const harbor = await loadHarborTask(options.harbor);
    const templates = await prepareHarborTemplates(config, [{ taskId: harbor.id, environment: harbor.environment }]);
    task = { ...harborRolloutArguments(harbor), ...templates.get(harbor.id) };
  } else {
    task = JSON.parse(await readFile(options.task!, 'utf8')) as Record<string, unknown>;
  }
  const args: Record<string, unknown> = { ...task };
  if (options.agent) args.agent = options.agent;
  if (scripted) {
    delete args.endpoint;
    Object.assign(args, { base_url: scripted.url, model: 'scripted-model' });
  }
  if (options.endpoint) args.endpoint = options.endpoint;
  if (options.baseUrl) args.base_url = options.baseUrl;
  if (options.model) args.model = options.model;
  if (options.mode) args.mode = options.mode;
  if (options.agentTimeout) args.agent_timeout_s = Number(options.agentTimeout);
  if (options.apiKeyEnv) {
    const key = process.env[options.apiKeyEnv];
    if (!key) throw new InvalidInputError(`--api-key-env ${options.apiKeyEnv}: that environment variable is not set`);
    args.api_key = key;
  }
  return args;
}

function summary(result: RolloutResult, options: RolloutCommandOptions, runtime: Runtime): string {
  const agentTurns = result.proxy_turns.filter((t) => t.kind === 'agent').length;
  const lines = [
    `task:      ${result.task_id || path.basename(options.task ?? options.harbor ?? '')}`,
    `reward:    ${result.reward === null ? 'null' : result.reward.toFixed(2)}${Object.keys(result.rewards).length ? ` ${JSON.stringify(result.rewards)}` : ''}`,
    `turns:     ${result.proxy_turns.length} LLM turns (${agentTurns} agent steps)`,
    `agent:     exit ${result.agent_exit_code ?? '-'}${result.agent_timed_out ? ' (timed out)' : ''}, ${result.agent_events.length} events`,
    `verifier:  ${result.verify_results.map((r) => `exit ${r.exit_code ?? 'killed'}`).join(', ') || 'none'}`,
    `files:     ${Object.keys(result.files).join(', ') || '-'}`,
    `wall time: ${result.wall_s.toFixed(2)} s (${Object.entries(result.timings)
      .map(([k, v]) => `${k} ${v.toFixed(2)}`)
      .join(', ')})`,
    `trace:     ${result.trace_uri ?? 'not stored'}${result.trace_uri ? ` (${runtime.traces.fileFor(result.rollout_id)})` : ''}`,
  ];
  if (result.error) lines.push(`error:     ${result.error} [${result.error_kind}]`);
  return `${lines.join('\n')}\n`;
}

/**
 * `opencode-env rollout`: one rollout of a task file, without an MCP client, through the same tool call
 * as every transport. With --scripted-llm the model is the offline scripted server, so it runs anywhere
 * with no key. A person gets readable progress and a summary; --json gets JSON logs and the full result.
 */
export async function runRolloutCommand(options: RolloutCommandOptions): Promise<number> {
  const config = loadConfig();
  // At a terminal, routine info lines would drown the progress: only warnings, unless a level was asked for.
  const human = !options.json;
  const level = human && !process.env.OPENCODE_ENV_LOG_LEVEL ? 'warn' : config.logLevel;
  const runtime = createRuntime(config, createLogger(level, human ? 'human' : 'json'));
  runtime.lifecycle.installProcessHandlers();

  const scripted = options.scriptedLlm ? await startScriptedLlm({ script: await loadScript(options.scriptedLlm) }) : null;
  if (scripted) runtime.lifecycle.onShutdown('scripted model', () => scripted.close());
  try {
    const args = await rolloutArguments(options, scripted, config);
    const session = openSession(runtime);
    const abort = new AbortController();
    const started = performance.now();
    const call = callTool(runRolloutTool, args, session.services, {
      signal: abort.signal,
      progress: (message) => {
        if (human) process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(1).padStart(5)} s] ${message}\n`);
        else runtime.logger.info({ progress: message }, 'rollout progress');
      },
    });
    // Ctrl-C cancels the rollout, which then stores its partial trace before the process exits.
    session.scope.onShutdown('rollout', async () => {
      abort.abort();
      await call;
    });
    const outcome = await call;
    await session.close();
    if (!outcome.ok) {
      const what = outcome.error.class === 'invalid_input' ? `invalid task ${options.task ?? options.harbor}` : 'the rollout failed';
      process.stderr.write(`opencode-env: ${what}: ${outcome.error.message}\n`);
      return 1;
    }
    const result = outcome.value;
    process.stdout.write(options.json ? `${JSON.stringify(result, null, 2)}\n` : summary(result, options, runtime));
    return result.error ? 1 : 0;
  } finally {
    await scripted?.close();
    await runtime.provider.killAll();
  }
}
