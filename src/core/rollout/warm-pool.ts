import path from 'node:path';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../log.js';
import type { LlmChannel, Sandbox, SandboxProcess, SandboxProvider } from '../../sandbox/types.js';
import { isBindableModel, modelBindingFiles, opencodeArgs, opencodeEnv, prepareOpencodeHome, type OpencodeSettings } from './opencode.js';

/**
 * The warm pool: sandboxes kept ready with opencode serve started and warmed (every code path a first prompt needs,
 * loaded on a project instance of its own) by the in-sandbox driver (resources/sandbox/opencode-serve-driver.mjs), so
 * that a rollout's agent reaches the model in a fraction of a second instead of seconds. One entry serves one rollout
 * and goes with its sandbox; the pool refills.
 *
 * An entry serves any model: opencode is started without one, and the rollout that takes it binds its model and output
 * cap (files the workdir's project instance reads as it loads, with the prompt), so opencode is configured exactly as
 * a cold run is, down to the system prompt and sampling it picks by model id. The endpoint, key and budgets are the
 * proxy's, bound when the rollout takes the entry. What is fixed when opencode starts (thinking off, compaction) is
 * what an entry is made for: the pool aims at that of the last rollout that asked.
 */

/** What a rollout asks of opencode; the base URL is each sandbox's own LLM channel. */
export type WarmSettings = Omit<OpencodeSettings, 'baseUrl' | 'apiKey'>;
/** The part of it an entry is made for: all but the model and its output cap. */
type EntrySettings = Omit<WarmSettings, 'model' | 'maxTokensCap'>;

const entrySettings = ({ disableThinking, autoCompact }: WarmSettings): EntrySettings => ({
  disableThinking: disableThinking ?? false,
  autoCompact: autoCompact ?? false,
});

export interface WarmPoolOptions {
  provider: SandboxProvider;
  /** Entries kept ready. */
  size: number;
  logger: Logger;
  /** An entry not ready this long after its sandbox was asked for is replaced. */
  readyTimeoutMs: number;
  /** An entry unused this long is replaced (the sandbox's lifetime runs out after it). */
  idleMs: number;
  /** How often a waiting entry is asked whether its opencode still answers, and how long it has to answer. */
  healthIntervalMs: number;
  healthTimeoutMs: number;
  /** A waiting opencode serve whose resident memory passes this is replaced. */
  maxRssMiB: number;
}

/** Why entries left the pool without serving a rollout, counted (for logs and tests). */
type RetireReason = 'settings changed' | 'idle' | 'no answer' | 'memory' | 'exited' | 'lifetime';

/** A ready agent, taken by one rollout: bind the LLM channel to its proxy, then send the prompt. */
export interface WarmAgent {
  readonly sandbox: Sandbox;
  /** The driver (and with it opencode) exited: it can take no prompt. */
  readonly ended: boolean;
  /** The sandbox's LLM channel: its connections go where `bindLlm` says. */
  readonly llmChannel: LlmChannel;
  /** The rollout's LLM connections from now on; before this, none is expected and any is dropped. */
  bindLlm(accept: (connection: Duplex) => void): void;
  /**
   * Binds the model and starts the agent: its events arrive on `onStdout` as `opencode run --format json` prints them;
   * exit as run's.
   */
  prompt(
    instruction: string,
    model: Pick<WarmSettings, 'model' | 'maxTokensCap'>,
    output: { onStdout: (chunk: Buffer) => void; onStderr: (chunk: Buffer) => void },
  ): Promise<SandboxProcess>;
  /** How long the sandbox still lives. */
  remainingLifetimeMs(): number;
}

/** The driver's exit status when it, not opencode, failed (opencode's own failures exit 1, as `opencode run`). */
export const WARM_DRIVER_FAILED = 2;
/** The driver's own lines on stdout carry this type prefix; everything else is the agent's events. */
const CONTROL_PREFIX = 'opencode-env.';

class WarmEntry implements WarmAgent {
  private accept: ((connection: Duplex) => void) | null = null;
  private stdout: (chunk: Buffer) => void = () => undefined;
  private stderr: (chunk: Buffer) => void = () => undefined;
  private partialLine = '';
  private lastLines: string[] = [];
  readonly ready: Promise<void>;
  private readonly createdAt = Date.now();
  private onReady: () => void = () => undefined;
  readyAt = 0;
  /** The driver (with serve) ended: a crash while waiting, of no use any more. */
  ended = false;
  /** The last ping sent and not answered yet (its time), and the last answer's serve memory. */
  pingSentAt: number | null = null;
  rssMiB: number | null = null;
  private pings = 0;

  constructor(
    readonly sandbox: Sandbox,
    readonly llmChannel: LlmChannel,
    private readonly driver: SandboxProcess,
    private readonly lifetimeMs: number,
    readyTimeoutMs: number,
    attach: (onStdout: (chunk: Buffer) => void, onStderr: (chunk: Buffer) => void) => void,
  ) {
    this.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not ready after ${readyTimeoutMs} ms`)), readyTimeoutMs);
      this.onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      void driver.exited.then((exit) => {
        this.ended = true;
        clearTimeout(timer);
        reject(new Error(`the driver exited before it was ready (code ${exit.exitCode}): ${this.lastLines.join('\n').slice(-500)}`));
      });
    });
    this.ready.catch(() => undefined);
    attach(
      (chunk) => this.output(chunk),
      (chunk) => this.stderr(chunk),
    );
  }

  /** Whole lines: the driver's own go to the pool, the agent's events to the rollout, as they came. */
  private output(chunk: Buffer): void {
    const text = this.partialLine + chunk.toString('utf8');
    const end = text.lastIndexOf('\n') + 1;
    this.partialLine = text.slice(end);
    let agent = '';
    for (const line of text.slice(0, end).split('\n')) {
      if (!line) continue;
      if (!line.includes(`"type":"${CONTROL_PREFIX}`)) {
        agent += `${line}\n`;
        continue;
      }
      const message = JSON.parse(line) as { type: string; rss_mib?: number | null };
      if (message.type === `${CONTROL_PREFIX}ready`) {
        this.readyAt = Date.now();
        this.onReady();
      } else if (message.type === `${CONTROL_PREFIX}pong`) {
        this.pingSentAt = null;
        this.rssMiB = message.rss_mib ?? null;
      }
    }
    if (!agent) return;
    if (this.readyAt === 0) this.lastLines = [...this.lastLines, agent].slice(-20);
    else this.stdout(Buffer.from(agent));
  }

  /** Asks the waiting driver whether serve still answers (and how big it is); the answer lands in `rssMiB`. */
  ping(): void {
    this.pingSentAt = Date.now();
    this.driver.write(`${JSON.stringify({ ping: ++this.pings })}\n`).catch(() => undefined);
  }

  /** The channel's connections go to the rollout's proxy once bound; opencode makes none before its prompt. */
  connection(connection: Duplex): void {
    if (this.accept) this.accept(connection);
    else connection.destroy();
  }

  bindLlm(accept: (connection: Duplex) => void): void {
    this.accept = accept;
  }

  async prompt(
    instruction: string,
    model: Pick<WarmSettings, 'model' | 'maxTokensCap'>,
    output: { onStdout: (chunk: Buffer) => void; onStderr: (chunk: Buffer) => void },
  ): Promise<SandboxProcess> {
    const binding = modelBindingFiles(model, this.sandbox.homeDir);
    if (!binding) throw new Error(`a warm opencode cannot be bound to the model id ${JSON.stringify(model.model)}`);
    await this.sandbox.writeFiles(Object.entries(binding).map(([file, content]) => ({ path: file, content })));
    this.stdout = output.onStdout;
    this.stderr = output.onStderr;
    await this.driver.write(`${JSON.stringify({ prompt: instruction, model: opencodeArgs(model.model).at(-1) })}\n`);
    await this.driver.endInput();
    return this.driver;
  }

  remainingLifetimeMs(): number {
    return this.lifetimeMs - (Date.now() - this.createdAt);
  }

  async discard(): Promise<void> {
    await this.llmChannel.close().catch(() => undefined);
    await this.sandbox.kill().catch(() => undefined);
  }
}

export class WarmPool {
  private target: { key: string; settings: EntrySettings } | null = null;
  private readonly ready: WarmEntry[] = [];
  private starting = 0;
  private closed = false;
  private readonly idleTimers = new Map<WarmEntry, NodeJS.Timeout>();
  private healthTimer: NodeJS.Timeout | null = null;
  /** Aborted by close(): an entry being made stops at its next step. */
  private readonly closing = new AbortController();
  private readonly inFlight = new Set<Promise<unknown>>();
  readonly stats = { made: 0, taken: 0, retired: {} as Partial<Record<RetireReason, number>> };

  constructor(private readonly options: WarmPoolOptions) {}

  /**
   * A ready agent for these settings, or null (the rollout then starts cold); either way the pool aims at them. A model
   * id that cannot be bound (see `modelBindingFiles`) gets null and leaves the pool as it is.
   */
  take(settings: WarmSettings, minLifetimeMs: number): WarmAgent | null {
    if (!isBindableModel(settings.model)) return null;
    const made = entrySettings(settings);
    const key = JSON.stringify(made);
    if (this.target?.key !== key) {
      this.target = { key, settings: made };
      // Made for other settings: of no use to the rollouts to come.
      for (const entry of this.ready.splice(0)) this.retire(entry, 'settings changed');
    }
    let taken: WarmEntry | null = null;
    while (!taken && this.ready.length > 0) {
      const entry = this.ready.shift()!;
      clearTimeout(this.idleTimers.get(entry));
      this.idleTimers.delete(entry);
      if (entry.ended || entry.sandbox.killed) this.retire(entry, 'exited');
      else if (entry.remainingLifetimeMs() < minLifetimeMs) this.retire(entry, 'lifetime');
      else taken = entry;
    }
    if (taken) this.stats.taken++;
    this.refill();
    return taken;
  }

  /** Kills every entry not taken; entries being made are killed when they are done. */
  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort();
    if (this.healthTimer) clearInterval(this.healthTimer);
    for (const timer of this.idleTimers.values()) clearTimeout(timer);
    for (const entry of this.ready.splice(0)) this.track(entry.discard());
    // Entries still being made stop at their next step and kill their sandbox; retired ones finish dying.
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  /** Work whose end close() waits for: entries being made or discarded. */
  private track(work: Promise<unknown>): void {
    this.inFlight.add(work);
    void work.finally(() => this.inFlight.delete(work)).catch(() => undefined);
  }

  private retire(entry: WarmEntry, reason: RetireReason): void {
    this.stats.retired[reason] = (this.stats.retired[reason] ?? 0) + 1;
    if (reason === 'no answer' || reason === 'memory' || reason === 'exited') {
      this.options.logger.warn({ sandbox: entry.sandbox.id, reason, rssMiB: entry.rssMiB }, 'replacing a warm opencode');
    }
    this.track(entry.discard());
  }

  /** Replaces waiting entries that did not answer the last ping in time or grew too big, then pings the rest. */
  private checkHealth(): void {
    const now = Date.now();
    for (const entry of [...this.ready]) {
      const silent = entry.pingSentAt !== null && now - entry.pingSentAt > this.options.healthTimeoutMs;
      const reason: RetireReason | null = entry.ended
        ? 'exited'
        : silent
          ? 'no answer'
          : entry.rssMiB !== null && entry.rssMiB > this.options.maxRssMiB
            ? 'memory'
            : null;
      if (reason) {
        this.ready.splice(this.ready.indexOf(entry), 1);
        clearTimeout(this.idleTimers.get(entry));
        this.idleTimers.delete(entry);
        this.retire(entry, reason);
      } else if (entry.pingSentAt === null) {
        entry.ping();
      }
    }
    this.refill();
  }

  private refill(): void {
    if (!this.healthTimer && !this.closed) {
      this.healthTimer = setInterval(() => this.checkHealth(), this.options.healthIntervalMs);
      this.healthTimer.unref();
    }
    while (!this.closed && this.target && this.ready.length + this.starting < this.options.size) {
      this.starting += 1;
      const target = this.target;
      const making = this.make(target.settings)
        .then(async (entry) => {
          if (this.closed || this.target?.key !== target.key) return entry.discard();
          this.stats.made++;
          this.ready.push(entry);
          // An entry nobody takes in time is replaced by a fresh one.
          const timer = setTimeout(() => {
            const index = this.ready.indexOf(entry);
            if (index >= 0) this.ready.splice(index, 1);
            this.idleTimers.delete(entry);
            this.retire(entry, 'idle');
            this.refill();
          }, this.options.idleMs);
          timer.unref();
          this.idleTimers.set(entry, timer);
        })
        .catch((error: Error) => {
          if (this.closed) return; // killed by close(): nothing to report
          this.options.logger.warn({ err: error }, 'a warm opencode could not be made; rollouts start cold meanwhile');
          // Not at once: a backend that cannot make sandboxes now would otherwise be asked again and again.
          if (!this.closed) setTimeout(() => this.refill(), 5000).unref();
        })
        .finally(() => {
          this.starting -= 1;
        });
      this.track(making);
    }
  }

  private async make(settings: EntrySettings): Promise<WarmEntry> {
    const lifetimeMs = this.options.idleMs + this.options.readyTimeoutMs + WARM_ROLLOUT_ROOM_MS;
    const sandbox = await this.options.provider.create({ label: 'warm', lifetimeMs });
    let entry: WarmEntry | null = null;
    let stop: () => void = () => undefined;
    const closed = new Promise<never>((_resolve, reject) => (stop = () => reject(new Error('the warm pool closed'))));
    closed.catch(() => undefined);
    if (this.closing.signal.aborted) stop();
    else this.closing.signal.addEventListener('abort', stop, { once: true });
    try {
      if (this.closed) await closed;
      const channel = await sandbox.openLlmChannel((connection) => (entry ? entry.connection(connection) : connection.destroy()));
      const opencode = await sandbox.ensureBinary('opencode');
      // Not the workdir: its instance is made with the prompt, once the model is bound. (The file makes the directory.)
      const warmUpDir = path.posix.join(sandbox.homeDir, '.cache/opencode-env/warm-up');
      await prepareOpencodeHome(sandbox, {
        ...modelBindingFiles({ model: 'unbound', maxTokensCap: 1 }, sandbox.homeDir),
        [path.posix.join(warmUpDir, '.keep')]: '',
      });
      const [node, driver] = await Promise.all([sandbox.binaryPath('node'), sandbox.resourcePath('sandbox/opencode-serve-driver.mjs')]);
      let onStdout: (chunk: Buffer) => void = () => undefined;
      let onStderr: (chunk: Buffer) => void = () => undefined;
      const started = await sandbox.start(await channel.command([node, driver, opencode.path, sandbox.workdir, warmUpDir]), {
        env: opencodeEnv({ ...settings, baseUrl: `${channel.url}/v1` }, sandbox.homeDir),
        onStdout: (chunk) => onStdout(chunk),
        onStderr: (chunk) => onStderr(chunk),
      });
      entry = new WarmEntry(sandbox, channel, started, lifetimeMs, this.options.readyTimeoutMs, (out, err) => {
        onStdout = out;
        onStderr = err;
      });
      await Promise.race([entry.ready, closed]);
      return entry;
    } catch (error) {
      await sandbox.kill().catch(() => undefined);
      throw error;
    } finally {
      this.closing.signal.removeEventListener('abort', stop);
    }
  }
}

/** How long a taken entry's sandbox still lives at least: room for the rollout's own deadlines, checked on take. */
const WARM_ROLLOUT_ROOM_MS = 3 * 60 * 60 * 1000;
