import path from 'node:path';
import { InfrastructureError, InvalidInputError, SandboxError, type InfrastructureErrorKind } from '../../errors.js';
import type { Logger } from '../../log.js';
import { HARBOR_TESTS_DIR, type Sandbox, type SandboxProvider } from '../../sandbox/types.js';
import { Cancellation } from '../../util/cancel-group.js';
import { CappedOutput } from '../../util/capped-output.js';
import type { Semaphore } from '../../util/semaphore.js';
import { startRecordingProxy, type RecordingProxy } from '../proxy/recording-proxy.js';
import type { ProxyTurn } from '../proxy/types.js';
import { newRolloutId, scrubSecrets, traceUri, type TraceStore, type TraceWriter } from '../traces.js';
import { redactUrl, resolveEndpoint, urlCredentials, type EndpointCatalog, type ResolvedEndpoint } from './endpoints.js';
import { collectWorkdirFiles, validateStagedPath } from './files.js';
import { OpencodeEventCollector, planOpencodeRun } from './opencode.js';
import { blankRolloutResult, type CommandRecord, type RolloutPhase, type RolloutResult, type RolloutSpec } from './schema.js';
import { computeReward, runShellCommand } from './verifier.js';
import type { WarmAgent, WarmPool, WarmSettings } from './warm-pool.js';
import { runWarmAgent, WARM_FIRST_REQUEST_MS } from './warm-run.js';

const TAIL_CHARS = 2000;
/** Slack on top of the phases' own time limits before a rollout's sandbox is killed regardless. */
const SANDBOX_LIFETIME_SLACK_S = 300;

export interface RolloutRunnerDeps {
  provider: SandboxProvider;
  traces: TraceStore;
  concurrency: Semaphore;
  logger: Logger;
  /** The named endpoints, as configured at start-up. */
  endpoints: EndpointCatalog;
  /** Upstream failures in a row after which the proxy stops retrying. */
  maxConsecutiveUpstreamFailures: number;
  /** The agent's requests larger than this are refused by the proxy (OPENCODE_ENV_MAX_REQUEST_MB). */
  maxRequestBytes: number;
  /** Why the agent cannot run on this server (its binary is missing), or null; checked before a sandbox is made. */
  agentProblem?: () => string | null;
  /** Sandboxes with opencode already started (OPENCODE_ENV_WARM_POOL); without it every rollout starts cold. */
  warmPool?: WarmPool | null;
  /**
   * A warm opencode that has not called the model this long after its prompt is taken for hung (opencode can hang
   * at start-up at 0% CPU) and replaced by a cold one in the same sandbox. Default WARM_FIRST_REQUEST_MS.
   */
  warmFirstRequestMs?: number;
}

export interface RolloutRunOptions {
  signal?: AbortSignal | undefined;
  /** Phase changes and LLM turns, as short human-readable messages. */
  onProgress?: ((message: string) => void) | undefined;
}

function tail(text: string): string {
  return text.length > TAIL_CHARS ? text.slice(-TAIL_CHARS) : text;
}

/** What sessions and tools need of the rollout runner. */
export interface RolloutService {
  run(spec: RolloutSpec, options?: RolloutRunOptions): Promise<RolloutResult>;
}

/** The endpoint of an oracle rollout, which calls no model (its result names the endpoint `oracle`). */
const ORACLE_ENDPOINT: ResolvedEndpoint = { name: 'custom', baseUrl: '', apiKey: '', model: '' };

/** Why a verifier_files path is refused, or null: absolute, normalized, and under /tests (the verifier's alone). */
function verifierFileProblem(file: string): string | null {
  const under = `${HARBOR_TESTS_DIR}/`;
  if (file.startsWith(under) && path.posix.normalize(file) === file && !file.endsWith('/')) return null;
  return `verifier_files: ${JSON.stringify(file)} must be a normalized absolute path under ${under}`;
}

/** Any failure of a step outside the agent's control, as an infrastructure error of that kind. */
function asInfrastructure(kind: InfrastructureErrorKind, error: unknown): InfrastructureError {
  if (error instanceof InfrastructureError) return error;
  return new InfrastructureError(kind, error instanceof Error ? error.message : String(error), { cause: error });
}

/** For `.catch()` on a step outside the agent's control: its failure is an infrastructure error of `kind`. */
function rethrowAs(kind: InfrastructureErrorKind): (error: unknown) => never {
  return (error) => {
    throw asInfrastructure(kind, error);
  };
}

/** The most a rollout can legitimately take once it has its sandbox: every phase at its time limit, plus slack. */
function sandboxLifetimeMs(spec: RolloutSpec): number {
  const verifiers = (spec.test_script ? 1 : 0) + (spec.verify?.length ?? 0);
  const seconds = (spec.setup?.length ?? 0) * spec.setup_timeout_s + spec.agent_timeout_s + verifiers * spec.verify_timeout_s;
  return (seconds + SANDBOX_LIFETIME_SLACK_S) * 1000;
}

/**
 * Runs one rollout: sandbox -> staged files -> setup -> proxy -> opencode -> verifier -> files -> trace.
 * Every phase is timed; whatever happens, the sandbox and proxy are torn down and a trace is stored.
 */
export class RolloutRunner implements RolloutService {
  constructor(private readonly deps: RolloutRunnerDeps) {}

  /** Checks a spec without running anything; throws InvalidInputError naming the problem. */
  validate(spec: RolloutSpec): ResolvedEndpoint {
    if (spec.max_total_tokens !== undefined && spec.mode === 'black_box') {
      throw new InvalidInputError('max_total_tokens needs mode transparent_proxy: in black_box mode the proxy reads no usage');
    }
    for (const file of Object.keys(spec.files ?? {})) {
      const problem = validateStagedPath(file);
      if (problem) throw new InvalidInputError(problem);
    }
    for (const file of Object.keys(spec.verifier_files ?? {})) {
      const problem = verifierFileProblem(file);
      if (problem) throw new InvalidInputError(problem);
    }
    const task = spec.task_id ? `task ${spec.task_id}` : 'the task';
    if (spec.workdir !== undefined && this.deps.provider.backend === 'local') {
      throw new InvalidInputError(
        `${task}: workdir ${spec.workdir} needs a backend with templates (E2B); the local backend's workdir is fixed`,
      );
    }
    if (spec.environment_needs !== undefined) {
      // Decided before anything runs: the host's tools cannot stand in for an image. On E2B, the template built from
      // it (`opencode-env batch` and `rollout --harbor` build Harbor tasks' own) must be named.
      if (this.deps.provider.backend === 'local') {
        throw new InvalidInputError(
          `${task} needs ${spec.environment_needs}; the local backend runs on this host's tools — use E2B (OPENCODE_ENV_SANDBOX=e2b)`,
        );
      }
      if (!spec.template) throw new InvalidInputError(`${task} needs ${spec.environment_needs}; pass a template built from it`);
    }
    // The oracle runs a script: no model, so no endpoint to resolve.
    if (spec.agent === 'oracle') return ORACLE_ENDPOINT;
    return resolveEndpoint(
      { endpoint: spec.endpoint, baseUrl: spec.base_url, apiKey: spec.api_key, model: spec.model },
      this.deps.endpoints,
    );
  }

  async run(spec: RolloutSpec, options: RolloutRunOptions = {}): Promise<RolloutResult> {
    const endpoint = this.validate(spec);
    // Everything that could let someone else use the endpoint: keys, and credentials written into URLs.
    const secrets = [spec.api_key, endpoint.apiKey, ...urlCredentials(endpoint.baseUrl), ...urlCredentials(spec.base_url ?? '')];
    const { signal } = options;
    const progress = options.onProgress ?? (() => {});
    const rolloutId = newRolloutId();
    const createdAt = new Date().toISOString();
    const started = performance.now();
    const log = this.deps.logger.child({ rollout: rolloutId, task: spec.task_id });
    const result = blankRolloutResult({
      rollout_id: rolloutId,
      task_id: spec.task_id ?? '',
      mode: spec.mode,
      endpoint:
        spec.agent === 'oracle'
          ? { name: 'oracle', base_url: '', model: '' }
          : { name: endpoint.name, base_url: redactUrl(endpoint.baseUrl), model: endpoint.model },
      template: spec.template ?? null,
    });
    // The reason says who cancelled (the client, a disconnect, shutdown) when the canceller gave one.
    const cancelled = () =>
      new InfrastructureError('cancelled', signal?.reason instanceof Cancellation ? `cancelled: ${signal.reason.why}` : 'cancelled');

    const phase = async <T>(name: RolloutPhase, work: () => Promise<T>): Promise<T> => {
      if (signal?.aborted) throw cancelled();
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
    let warm: WarmAgent | null = null;
    let proxy: RecordingProxy | null = null;
    const events = new OpencodeEventCollector();
    // Written as the rollout runs (each LLM turn when it completes), so even a SIGKILL leaves a trace to recover.
    // The stored spec names the URL without its credentials (short ones would escape the scrubbing by value).
    const recordedSpec = spec.base_url ? { ...spec, base_url: redactUrl(spec.base_url) } : spec;
    const trace = this.deps.traces.begin(
      { rollout_id: rolloutId, created_at: createdAt, spec: recordedSpec, endpoint: result.endpoint },
      secrets,
    );
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
          throw cancelled();
        }
      });
      const agentProblem = spec.agent === 'oracle' ? null : (this.deps.agentProblem?.() ?? null);
      if (agentProblem) throw new InfrastructureError('sandbox', `the agent cannot run on this server: ${agentProblem}`);
      const agentSettings: WarmSettings = {
        model: endpoint.model,
        maxTokensCap: spec.max_tokens_cap,
        disableThinking: spec.mode === 'black_box' && spec.disable_thinking === true,
        autoCompact: spec.auto_compact,
      };
      // The pool's sandboxes are the default template's, with the network on: a rollout asking otherwise starts cold.
      const warmable = spec.agent !== 'oracle' && !spec.template && !spec.workdir && spec.allow_internet;
      sandbox = await phase('sandbox', async () => {
        // Taken inside the phase, so that a rollout cancelled before it leaves the entry to the pool.
        warm = warmable ? (this.deps.warmPool?.take(agentSettings, sandboxLifetimeMs(spec)) ?? null) : null;
        if (warm) return warm.sandbox;
        return this.deps.provider
          .create({
            label: 'rollout',
            ...(spec.template ? { template: spec.template } : {}),
            ...(spec.workdir ? { workdir: spec.workdir } : {}),
            lifetimeMs: sandboxLifetimeMs(spec),
            allowInternet: spec.allow_internet,
            metadata: { rollout_id: rolloutId, ...(spec.task_id ? { task_id: spec.task_id } : {}) },
          })
          .catch(rethrowAs('sandbox'));
      });
      result.warm_start = warm !== null;
      result.sandbox_id = sandbox.id;
      const box = sandbox;

      if (spec.files && Object.keys(spec.files).length > 0) {
        await phase('files', async () => {
          const staged = Object.entries(spec.files!).map(([file, content]) => ({ path: path.posix.join(box.workdir, file), content }));
          await box.writeFiles(staged);
        });
      }

      if (spec.setup?.length) {
        await phase('setup', async () => {
          for (const [index, cmd] of spec.setup!.entries()) {
            const record = await runShellCommand(box, cmd, { timeoutS: spec.setup_timeout_s, ...(signal ? { signal } : {}) });
            result.setup_results.push(record);
            if (signal?.aborted) throw cancelled();
            if (record.exit_code !== 0) {
              const how = record.timed_out ? `timed out after ${spec.setup_timeout_s} s` : `failed with exit code ${record.exit_code}`;
              throw new InfrastructureError(
                'setup',
                `setup command ${index + 1} ${how}: ${cmd}${record.stderr ? `\n${tail(record.stderr.trim())}` : ''}`,
              );
            }
          }
        });
      }

      if (spec.verifier_files && box.verifierFilesDir === null) {
        throw new InfrastructureError(
          'sandbox',
          `verifier_files need ${HARBOR_TESTS_DIR}, which this sandbox (isolation ${box.isolation}) has not`,
        );
      }

      if (spec.agent === 'oracle') {
        await phase('agent', async () => {
          const oracle = await runShellCommand(box, 'bash -s', {
            timeoutS: spec.agent_timeout_s,
            stdin: spec.oracle_script!,
            ...(signal ? { signal } : {}),
          });
          agentStderr.push(Buffer.from(`${oracle.stdout}${oracle.stderr}`));
          result.agent_exit_code = oracle.exit_code;
          result.agent_timed_out = oracle.timed_out;
          if (signal?.aborted) throw cancelled();
        });
      } else {
        // Assigned inside the sandbox phase's callback, which the compiler does not follow.
        const warmAgent = warm as WarmAgent | null;
        let warmCalledModel = false;
        // A warm sandbox's opencode was found (or installed) when the pool made it: not again on the rollout's path.
        if (!warmAgent) {
          // Timed as a phase of its own only when a template lacked opencode and it had to be installed.
          const lookedUp = performance.now();
          const agentBinary = await box.ensureBinary('opencode').catch(rethrowAs('sandbox'));
          if (agentBinary.installed) {
            result.timings.install = Math.round(performance.now() - lookedUp) / 1000;
            progress(`installed opencode in the sandbox (${result.timings.install} s)`);
          }
        }
        const { recorder: activeProxy, llmChannel } = await phase('proxy', async () => {
          const recorder = await this.startProxy(spec, endpoint, progress, (turn) => trace.appendTurn(turn));
          proxy = recorder; // closed in `finally` even when the channel cannot be opened
          if (warmAgent) {
            warmAgent.bindLlm((connection) => {
              warmCalledModel = true;
              recorder.accept(connection);
            });
            return { recorder, llmChannel: warmAgent.llmChannel };
          }
          // How the agent reaches the proxy is the backend's business; the runner only hands it connections.
          const llmChannel = await box.openLlmChannel((connection) => recorder.accept(connection)).catch(rethrowAs('sandbox'));
          return { recorder, llmChannel };
        });
        proxy = activeProxy;

        await phase('agent', async () => {
          const output = { onStdout: (chunk: Buffer) => events.push(chunk), onStderr: (chunk: Buffer) => agentStderr.push(chunk) };
          const runCold = async () => {
            const plan = await planOpencodeRun(box, {
              ...agentSettings,
              instruction: spec.instruction,
              baseUrl: `${llmChannel.url}/v1`,
            }).catch(rethrowAs('sandbox'));
            return box.run(await llmChannel.command(plan.argv), {
              env: plan.env,
              stdin: plan.stdin,
              timeoutMs: spec.agent_timeout_s * 1000,
              maxOutputBytes: 64 * 1024,
              ...output,
              ...(signal ? { signal } : {}),
            });
          };
          let agent: { exitCode: number; timedOut: boolean; aborted: boolean };
          const warmRun = warmAgent
            ? await runWarmAgent(warmAgent, {
                instruction: spec.instruction,
                model: agentSettings,
                timeoutMs: spec.agent_timeout_s * 1000,
                signal,
                ...output,
                calledModel: () => warmCalledModel,
                firstRequestMs: this.deps.warmFirstRequestMs ?? WARM_FIRST_REQUEST_MS,
              })
            : null;
          if (warmRun && 'outcome' in warmRun) {
            agent = warmRun.outcome;
          } else {
            if (warmRun) {
              // It never reached the model, so nothing of it is in the trace: the cold run is the rollout's agent.
              const message = `the warm opencode ${warmRun.runCold}; starting opencode cold in the same sandbox`;
              this.deps.logger.warn({ rolloutId, sandbox: box.id }, message);
              progress(message);
              agentStderr.push(Buffer.from(`[opencode-env] ${message}\n`));
              result.warm_start = false;
            }
            agent = await runCold();
          }
          events.finish();
          result.agent_exit_code = agent.timedOut || agent.aborted ? null : agent.exitCode;
          result.agent_timed_out = agent.timedOut;
          result.budget_exhausted = activeProxy.budgetEnded;
          if (signal?.aborted) throw cancelled();
          if (activeProxy.gaveUp) throw new InfrastructureError('upstream', `LLM endpoint unavailable: ${activeProxy.gaveUp}`);
          if (agent.exitCode === 126 || agent.exitCode === 127) {
            throw new InfrastructureError(
              'sandbox',
              `the agent could not start (exit code ${agent.exitCode}): ${tail(agentStderr.toString().trim())}`,
            );
          }
          if (!agent.timedOut && agent.exitCode !== 0 && activeProxy.stats.successes === 0) {
            const reason =
              activeProxy.turns.find((t) => t.upstream_error)?.upstream_error?.message ?? events.errors()[0] ?? 'no LLM call succeeded';
            throw new InfrastructureError(
              'upstream',
              `the agent exited with code ${agent.exitCode} without a single successful LLM call: ${reason}`,
            );
          }
        });
      }

      await phase('verify', async () => {
        if (!spec.test_script && !spec.verify?.length) {
          // No verifier, no reward: a reward file the agent wrote itself does not count.
          return;
        }
        // From here on the agent has no process left, and the verifier runs as someone the agent cannot reach.
        await box.prepareVerifier().catch(rethrowAs('sandbox'));
        if (spec.verifier_files) {
          await box
            .writeFiles(Object.entries(spec.verifier_files).map(([file, content]) => ({ path: file, content })))
            .catch(rethrowAs('sandbox'));
        }
        let testScript: CommandRecord | null = null;
        const runVerifier = async (cmd: string, label: string): Promise<CommandRecord> => {
          const record = await runShellCommand(box, cmd, {
            timeoutS: spec.verify_timeout_s,
            as: 'verifier',
            ...(spec.verifier_env ? { env: spec.verifier_env } : {}),
            ...(signal ? { signal } : {}),
          });
          result.verify_results.push(record);
          if (signal?.aborted) throw cancelled();
          if (record.timed_out) {
            throw new InfrastructureError(
              'verifier',
              `verifier ${label} was killed after verify_timeout_s = ${spec.verify_timeout_s} s: ${cmd.split('\n')[0]}`,
            );
          }
          return record;
        };
        if (spec.test_script) {
          const scriptPath = path.posix.join(box.rewardDir, 'test.sh');
          await box.writeFile(scriptPath, spec.test_script);
          testScript = await runVerifier(`bash ${scriptPath}`, 'test_script');
        }
        const verify: CommandRecord[] = [];
        for (const [index, cmd] of (spec.verify ?? []).entries()) verify.push(await runVerifier(cmd, `command ${index + 1}`));
        const reward = await computeReward(box, { testScript, verify });
        if (reward.problem) throw new InfrastructureError('verifier', `verifier output unusable: ${reward.problem}`);
        result.reward = reward.reward;
        result.rewards = reward.rewards;
      });

      await phase('collect', async () => {
        Object.assign(result, await collectWorkdirFiles(box));
        filesCollected = true;
      });
    } catch (error) {
      // A sandbox that failed mid-run (killed, gone) is the sandbox's failure; anything else unexpected is ours.
      const failure = error instanceof SandboxError ? asInfrastructure('sandbox', error) : error;
      result.reward = null;
      if (failure instanceof InfrastructureError) {
        result.error = failure.message;
        result.error_kind = failure.kind;
      } else {
        result.error = `internal error: ${(error as Error).message}`;
        result.error_kind = 'internal';
        log.error({ err: error }, 'rollout failed unexpectedly');
      }
    } finally {
      if (sandbox && !filesCollected && !signal?.aborted) {
        // Keep what the agent produced even when the rollout failed: it is what one debugs with.
        Object.assign(result, await collectWorkdirFiles(sandbox).catch(() => ({})));
      }
      await proxy?.close().catch(() => undefined);
      await sandbox?.kill().catch((error: Error) => log.error({ err: error }, 'could not kill the rollout sandbox'));
      release?.();
      result.proxy_turns = [...(proxy?.turns ?? [])];
      result.agent_events = events.events;
      const agentLog = [agentStderr.toString().trim(), events.nonJsonOutput(), ...events.errors()].filter(Boolean).join('\n');
      result.agent_log_tail = tail(agentLog);
      result.proxy_log_tail = tail(proxy?.logTail() ?? '');
      result.wall_s = Math.round(performance.now() - started) / 1000;
      await this.storeTrace(trace, result, progress, log);
      result.wall_s = Math.round(performance.now() - started) / 1000;
    }
    log.info(
      {
        reward: result.reward,
        error: result.error,
        error_kind: result.error_kind,
        wall_s: result.wall_s,
        turns: result.proxy_turns.length,
      },
      'rollout finished',
    );
    // An upstream may echo the key in an error body; nothing that leaves here may carry it.
    return JSON.parse(scrubSecrets(JSON.stringify(result), secrets)) as RolloutResult;
  }

  private async startProxy(
    spec: RolloutSpec,
    endpoint: ResolvedEndpoint,
    progress: (message: string) => void,
    onTurn: (turn: ProxyTurn) => void,
  ): Promise<RecordingProxy> {
    const record = spec.mode === 'transparent_proxy';
    return startRecordingProxy({
      upstreamBaseUrl: endpoint.baseUrl,
      ...(endpoint.apiKey ? { apiKey: endpoint.apiKey } : {}),
      record,
      topLogprobs: spec.top_logprobs,
      requestTokenIds: true,
      disableThinking: record && spec.disable_thinking === true,
      maxTokensCap: spec.max_tokens_cap,
      maxConsecutiveFailures: this.deps.maxConsecutiveUpstreamFailures,
      maxRequestBytes: this.deps.maxRequestBytes,
      budget: { maxLlmCalls: spec.max_llm_calls ?? null, maxTotalTokens: spec.max_total_tokens ?? null },
      onTurn: (turn) => {
        onTurn(turn);
        progress(
          `LLM turn ${turn.turn} (${turn.kind}): ${turn.upstream_error ? `error ${turn.upstream_error.message}` : `${turn.finish_reason ?? 'no finish'}, ${turn.completion_token_ids.length || turn.completion_tokens.length} tokens, ${turn.latency_s.toFixed(2)} s`}`,
        );
      },
    });
  }

  /**
   * Writes the result line. A trace that cannot be written (disk full) leaves no file behind, `trace_uri: null`
   * and, when nothing else went wrong, `error`/`error_kind: internal` saying why; the reward is kept as computed.
   */
  private async storeTrace(trace: TraceWriter, result: RolloutResult, progress: (message: string) => void, log: Logger): Promise<void> {
    const t0 = performance.now();
    progress('phase: trace');
    try {
      result.trace_uri = traceUri(result.rollout_id);
      await trace.finish(result);
    } catch (error) {
      result.trace_uri = null;
      log.error({ err: error }, 'could not store the trace');
      result.error ??= `the trace could not be stored: ${(error as Error).message}`;
      result.error_kind ??= 'internal';
    } finally {
      result.timings.trace = Math.round(performance.now() - t0) / 1000;
    }
  }
}
