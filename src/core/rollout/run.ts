import path from 'node:path';
import type { Logger } from '../../log.js';
import type { Sandbox, SandboxProvider } from '../../sandbox/types.js';
import { CappedOutput } from '../../util/capped-output.js';
import type { Semaphore } from '../../util/semaphore.js';
import { startRecordingProxy, type RecordingProxy } from '../proxy/recording-proxy.js';
import { summarizeTurn, type ProxyTurn } from '../proxy/types.js';
import { newRolloutId, scrubSecrets, traceUri, type TraceStore } from '../traces.js';
import { EndpointError, resolveEndpoint, type ResolvedEndpoint } from './endpoints.js';
import { collectWorkdirFiles, validateStagedPath } from './files.js';
import { LLM_PORT_PLACEHOLDER, OpencodeEventCollector, planOpencodeRun } from './opencode.js';
import type { CommandRecord, RolloutPhase, RolloutResult, RolloutSpec } from './types.js';
import { computeReward, prepareVerifierDir, runShellCommand, verifierLogsDir } from './verifier.js';

/** A problem with the request itself (bad endpoint, bad path): nothing was run, nothing is stored. */
export class RolloutInputError extends Error {}

/** Something outside the agent's control went wrong: the rollout gets `reward: null` and this message. */
class InfrastructureFailure extends Error {}

const TAIL_CHARS = 2000;
const SOCKET_NAME = 'llm.sock';

export interface RolloutRunnerDeps {
  provider: SandboxProvider;
  traces: TraceStore;
  concurrency: Semaphore;
  logger: Logger;
  /** Upstream failures in a row after which the proxy stops retrying (default 3). */
  maxConsecutiveUpstreamFailures?: number;
  env?: NodeJS.ProcessEnv;
}

export interface RolloutRunOptions {
  signal?: AbortSignal;
  /** Phase changes and LLM turns, as short human-readable messages. */
  onProgress?: (message: string) => void;
}

function tail(text: string): string {
  return text.length > TAIL_CHARS ? text.slice(-TAIL_CHARS) : text;
}

function isSuccessfulTurn(turn: ProxyTurn): boolean {
  return turn.upstream_status !== null && turn.upstream_status < 400 && turn.upstream_error === null;
}

/**
 * Runs one rollout: sandbox -> staged files -> setup -> proxy -> opencode -> verifier -> files -> trace.
 * Every phase is timed; whatever happens, the sandbox and proxy are torn down and a trace is stored.
 */
export class RolloutRunner {
  private readonly traceListeners = new Set<(rolloutId: string) => void>();

  constructor(private readonly deps: RolloutRunnerDeps) {}

  /** Calls `listener` after each stored trace (e.g. to tell MCP clients the resource list changed). */
  onTraceStored(listener: (rolloutId: string) => void): () => void {
    this.traceListeners.add(listener);
    return () => this.traceListeners.delete(listener);
  }

  /** Checks a spec without running anything; throws RolloutInputError naming the problem. */
  validate(spec: RolloutSpec): ResolvedEndpoint {
    for (const file of Object.keys(spec.files ?? {})) {
      const problem = validateStagedPath(file);
      if (problem) throw new RolloutInputError(problem);
    }
    try {
      return resolveEndpoint(
        {
          ...(spec.endpoint ? { endpoint: spec.endpoint } : {}),
          ...(spec.base_url ? { baseUrl: spec.base_url } : {}),
          ...(spec.api_key ? { apiKey: spec.api_key } : {}),
          ...(spec.model ? { model: spec.model } : {}),
        },
        this.deps.env,
      );
    } catch (error) {
      if (error instanceof EndpointError) throw new RolloutInputError(error.message);
      throw error;
    }
  }

  async run(spec: RolloutSpec, options: RolloutRunOptions = {}): Promise<RolloutResult> {
    const endpoint = this.validate(spec);
    const secrets = [spec.api_key, endpoint.apiKey];
    const { signal } = options;
    const progress = options.onProgress ?? (() => {});
    const rolloutId = newRolloutId();
    const createdAt = new Date().toISOString();
    const started = performance.now();
    const log = this.deps.logger.child({ rollout: rolloutId, task: spec.task_id });
    const result: RolloutResult = {
      rollout_id: rolloutId,
      task_id: spec.task_id ?? '',
      sandbox_id: '',
      reward: null,
      rewards: {},
      agent_exit_code: null,
      agent_timed_out: false,
      wall_s: 0,
      timings: {},
      mode: spec.mode,
      endpoint: { name: endpoint.name, base_url: endpoint.baseUrl, model: endpoint.model },
      template: spec.template ?? null,
      setup_results: [],
      verify_results: [],
      proxy_turns: [],
      agent_events: [],
      files: {},
      files_extra: [],
      agent_log_tail: '',
      proxy_log_tail: '',
      error: null,
      trace_uri: null,
    };

    const phase = async <T>(name: RolloutPhase, work: () => Promise<T>): Promise<T> => {
      if (signal?.aborted) throw new InfrastructureFailure('cancelled');
      progress(`phase: ${name}`);
      const t0 = performance.now();
      try {
        return await work();
      } finally {
        result.timings[name] = Math.round(performance.now() - t0) / 1000;
      }
    };

    let release: (() => void) | null = null;
    let sandbox: Sandbox | null = null;
    let proxy: RecordingProxy | null = null;
    const events = new OpencodeEventCollector();
    const agentStderr = new CappedOutput(16 * 1024);
    let filesCollected = false;
    log.info({ mode: spec.mode, endpoint: endpoint.name, model: endpoint.model }, 'rollout started');

    try {
      release = await phase('queue', async () => {
        if (this.deps.concurrency.running >= this.deps.concurrency.limit) {
          progress(`waiting for a free slot (${this.deps.concurrency.running} rollouts running, limit ${this.deps.concurrency.limit})`);
        }
        try {
          return await this.deps.concurrency.acquire(signal);
        } catch {
          throw new InfrastructureFailure('cancelled');
        }
      });
      sandbox = await phase('sandbox', () => this.deps.provider.create({ label: 'rollout' }));
      result.sandbox_id = sandbox.id;
      const box = sandbox;

      if (spec.files && Object.keys(spec.files).length > 0) {
        await phase('files', async () => {
          for (const [file, content] of Object.entries(spec.files!)) await box.writeFile(path.posix.join(box.workdir, file), content);
        });
      }

      if (spec.setup?.length) {
        await phase('setup', async () => {
          for (const [index, cmd] of spec.setup!.entries()) {
            const record = await runShellCommand(box, cmd, { timeoutS: spec.setup_timeout_s, ...(signal ? { signal } : {}) });
            result.setup_results.push(record);
            if (signal?.aborted) throw new InfrastructureFailure('cancelled');
            if (record.exit_code !== 0) {
              const how = record.timed_out ? `timed out after ${spec.setup_timeout_s} s` : `failed with exit code ${record.exit_code}`;
              throw new InfrastructureFailure(`setup command ${index + 1} ${how}: ${cmd}${record.stderr ? `\n${tail(record.stderr.trim())}` : ''}`);
            }
          }
        });
      }

      proxy = await phase('proxy', () => this.startProxy(box, spec, endpoint, progress));
      const activeProxy = proxy;

      await phase('agent', async () => {
        const channel = box.hostChannel!;
        const [node, bridge] = await Promise.all([box.toolExecutable('node'), box.resourcePath('sandbox/llm-bridge.mjs')]);
        const plan = await planOpencodeRun(box, {
          instruction: spec.instruction,
          model: endpoint.model,
          maxTokensCap: spec.max_tokens_cap,
          baseUrl: `http://127.0.0.1:${LLM_PORT_PLACEHOLDER}/v1`,
          disableThinking: spec.mode === 'black_box' && spec.disable_thinking === true,
        });
        const agent = await box.run([node, bridge, path.posix.join(channel.sandboxDir, SOCKET_NAME), LLM_PORT_PLACEHOLDER, '--', ...plan.argv], {
          env: plan.env,
          stdin: plan.stdin,
          timeoutMs: spec.agent_timeout_s * 1000,
          maxOutputBytes: 64 * 1024,
          onStdout: (chunk) => events.push(chunk),
          onStderr: (chunk) => agentStderr.push(chunk),
          ...(signal ? { signal } : {}),
        });
        events.finish();
        result.agent_exit_code = agent.timedOut || agent.aborted ? null : agent.exitCode;
        result.agent_timed_out = agent.timedOut;
        if (signal?.aborted) throw new InfrastructureFailure('cancelled');
        if (activeProxy.gaveUp) throw new InfrastructureFailure(`LLM endpoint unavailable: ${activeProxy.gaveUp}`);
        if (agent.exitCode === 126 || agent.exitCode === 127) {
          throw new InfrastructureFailure(`the agent could not start (exit code ${agent.exitCode}): ${tail(agentStderr.toString().trim())}`);
        }
        if (!agent.timedOut && agent.exitCode !== 0 && activeProxy.stats.successes === 0) {
          const reason = activeProxy.turns.find((t) => t.upstream_error)?.upstream_error?.message ?? events.errors()[0] ?? 'no LLM call succeeded';
          throw new InfrastructureFailure(`the agent exited with code ${agent.exitCode} without a single successful LLM call: ${reason}`);
        }
      });

      await phase('verify', async () => {
        if (!spec.test_script && !spec.verify?.length) {
          // No verifier, no reward: a reward file the agent wrote itself does not count.
          return;
        }
        await prepareVerifierDir(box, signal);
        let testScript: CommandRecord | null = null;
        const runVerifier = async (cmd: string, label: string): Promise<CommandRecord> => {
          const record = await runShellCommand(box, cmd, { timeoutS: spec.verify_timeout_s, ...(signal ? { signal } : {}) });
          result.verify_results.push(record);
          if (signal?.aborted) throw new InfrastructureFailure('cancelled');
          if (record.timed_out) throw new InfrastructureFailure(`verifier ${label} was killed after verify_timeout_s = ${spec.verify_timeout_s} s: ${cmd.split('\n')[0]}`);
          return record;
        };
        if (spec.test_script) {
          const scriptPath = path.posix.join(verifierLogsDir(box), 'test.sh');
          await box.writeFile(scriptPath, spec.test_script);
          testScript = await runVerifier(`bash ${scriptPath}`, 'test_script');
        }
        const verify: CommandRecord[] = [];
        for (const [index, cmd] of (spec.verify ?? []).entries()) verify.push(await runVerifier(cmd, `command ${index + 1}`));
        const reward = await computeReward(box, { testScript, verify });
        if (reward.problem) throw new InfrastructureFailure(`verifier output unusable: ${reward.problem}`);
        result.reward = reward.reward;
        result.rewards = reward.rewards;
      });

      await phase('collect', async () => {
        Object.assign(result, await collectWorkdirFiles(box));
        filesCollected = true;
      });
    } catch (error) {
      result.reward = null;
      result.error = error instanceof InfrastructureFailure ? error.message : `internal error: ${(error as Error).message}`;
      if (!(error instanceof InfrastructureFailure)) log.error({ err: error }, 'rollout failed unexpectedly');
    } finally {
      if (sandbox && !filesCollected && !signal?.aborted) {
        // Keep what the agent produced even when the rollout failed: it is what one debugs with.
        Object.assign(result, await collectWorkdirFiles(sandbox).catch(() => ({})));
      }
      await proxy?.close().catch(() => undefined);
      await sandbox?.kill().catch((error: Error) => log.error({ err: error }, 'could not kill the rollout sandbox'));
      release?.();
      result.proxy_turns = (proxy?.turns ?? []).map(summarizeTurn);
      result.agent_events = events.events;
      const agentLog = [agentStderr.toString().trim(), events.nonJsonOutput(), ...events.errors()].filter(Boolean).join('\n');
      result.agent_log_tail = tail(agentLog);
      result.proxy_log_tail = tail(proxy?.logTail() ?? '');
      result.wall_s = Math.round(performance.now() - started) / 1000;
      await this.storeTrace(spec, result, proxy?.turns ?? [], createdAt, secrets, progress, log);
      result.wall_s = Math.round(performance.now() - started) / 1000;
    }
    log.info({ reward: result.reward, error: result.error, wall_s: result.wall_s, turns: result.proxy_turns.length }, 'rollout finished');
    // An upstream may echo the key in an error body; nothing that leaves here may carry it.
    return JSON.parse(scrubSecrets(JSON.stringify(result), secrets)) as RolloutResult;
  }

  private async startProxy(sandbox: Sandbox, spec: RolloutSpec, endpoint: ResolvedEndpoint, progress: (message: string) => void): Promise<RecordingProxy> {
    if (!sandbox.hostChannel) {
      throw new InfrastructureFailure(`the ${sandbox.backend} backend cannot reach a proxy on this host; it needs the in-sandbox proxy`);
    }
    const record = spec.mode === 'transparent_proxy';
    return startRecordingProxy({
      upstreamBaseUrl: endpoint.baseUrl,
      ...(endpoint.apiKey ? { apiKey: endpoint.apiKey } : {}),
      record,
      topLogprobs: spec.top_logprobs,
      requestTokenIds: true,
      disableThinking: record && spec.disable_thinking === true,
      maxTokensCap: spec.max_tokens_cap,
      maxConsecutiveFailures: this.deps.maxConsecutiveUpstreamFailures ?? 3,
      listen: { socketPath: path.join(sandbox.hostChannel.hostDir, SOCKET_NAME) },
      onTurn: (turn) =>
        progress(
          `LLM turn ${turn.turn} (${turn.kind}): ${turn.upstream_error ? `error ${turn.upstream_error.message}` : `${turn.finish_reason ?? 'no finish'}, ${turn.completion_token_ids.length || turn.completion_tokens.length} tokens, ${turn.latency_s.toFixed(2)} s`}`,
        ),
    });
  }

  private async storeTrace(
    spec: RolloutSpec,
    result: RolloutResult,
    turns: ProxyTurn[],
    createdAt: string,
    secrets: Array<string | undefined>,
    progress: (message: string) => void,
    log: Logger,
  ): Promise<void> {
    const { api_key: _apiKey, ...storedSpec } = spec;
    const t0 = performance.now();
    progress('phase: trace');
    try {
      result.trace_uri = traceUri(result.rollout_id);
      await this.deps.traces.save(
        { version: 1, rollout_id: result.rollout_id, created_at: createdAt, finished_at: new Date().toISOString(), spec: storedSpec, result, turns },
        secrets,
      );
      for (const listener of this.traceListeners) listener(result.rollout_id);
    } catch (error) {
      result.trace_uri = null;
      log.error({ err: error }, 'could not store the trace');
      result.error ??= `the trace could not be stored: ${(error as Error).message}`;
    } finally {
      result.timings.trace = Math.round(performance.now() - t0) / 1000;
    }
  }
}
