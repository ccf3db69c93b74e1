import { randomBytes } from 'node:crypto';
import { appendFile, mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ProxyTurn } from './proxy/types.js';
import type { RolloutResult, RolloutSpec } from './rollout/schema.js';

/** Everything known about one rollout: what was asked, what came back, and every LLM call in full. */
export interface TraceRecord {
  version: 1;
  rollout_id: string;
  created_at: string;
  finished_at: string;
  /** The rollout's parameters; `api_key` is never stored. */
  spec: Omit<RolloutSpec, 'api_key'>;
  result: RolloutResult;
  turns: ProxyTurn[];
}

export interface TraceSummary {
  rollout_id: string;
  task_id: string;
  created_at: string;
  reward: number | null;
  error: string | null;
  turns: number;
}

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const INDEX_FILE = 'index.jsonl';
/** Shorter strings are not scrubbed: they are too likely to be ordinary words (e.g. "EMPTY"). */
const MIN_SECRET_LENGTH = 8;

export function newRolloutId(now = new Date()): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `rollout-${stamp}-${randomBytes(4).toString('hex')}`;
}

export const TRACE_URI_PREFIX = 'opencode-env://traces/';

export function traceUri(rolloutId: string): string {
  return `${TRACE_URI_PREFIX}${rolloutId}`;
}

/** Replaces every occurrence of each secret, however it was embedded, before anything is written. */
export function scrubSecrets(text: string, secrets: Array<string | undefined>): string {
  let out = text;
  for (const secret of secrets) {
    if (secret && secret.length >= MIN_SECRET_LENGTH) {
      // The raw secret, then each level of JSON escaping it may sit under (JSON text inside JSON, as in tool calls).
      let form = secret;
      for (let depth = 0; depth < 4; depth += 1) {
        out = out.split(form).join('[redacted]');
        const escaped = JSON.stringify(form).slice(1, -1);
        if (escaped === form) break;
        form = escaped;
      }
    }
  }
  return out;
}

/** Rollout traces as one JSON file each, written atomically, with an append-only index for listing. */
export class TraceStore {
  private readonly storedListeners = new Set<(rolloutId: string) => void>();

  constructor(readonly dir: string) {}

  /** Calls `listener` after each stored trace (e.g. to tell MCP clients the resource list changed). */
  onStored(listener: (rolloutId: string) => void): () => void {
    this.storedListeners.add(listener);
    return () => void this.storedListeners.delete(listener);
  }

  private fileFor(rolloutId: string): string {
    if (!ID_PATTERN.test(rolloutId)) throw new Error(`not a rollout id: ${JSON.stringify(rolloutId)}`);
    return path.join(this.dir, `${rolloutId}.json`);
  }

  async save(record: TraceRecord, secrets: Array<string | undefined>): Promise<string> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const file = this.fileFor(record.rollout_id);
    const temporary = `${file}.${process.pid}.${randomBytes(3).toString('hex')}.tmp`;
    await writeFile(temporary, scrubSecrets(JSON.stringify(record), secrets), { mode: 0o600 });
    await rename(temporary, file);
    const summary: TraceSummary = {
      rollout_id: record.rollout_id,
      task_id: record.result.task_id,
      created_at: record.created_at,
      reward: record.result.reward,
      error: record.result.error,
      turns: record.turns.length,
    };
    await appendFile(path.join(this.dir, INDEX_FILE), `${scrubSecrets(JSON.stringify(summary), secrets)}\n`, { mode: 0o600 });
    // The trace is stored whatever a listener does with the news.
    for (const listener of this.storedListeners) {
      try {
        listener(record.rollout_id);
      } catch {
        // a listener's failure is its own
      }
    }
    return file;
  }

  /** Newest first. */
  async list(limit = Infinity): Promise<TraceSummary[]> {
    const index = await readFile(path.join(this.dir, INDEX_FILE), 'utf8').catch(() => '');
    const summaries: TraceSummary[] = [];
    for (const line of index.split('\n')) {
      if (!line.trim()) continue;
      try {
        summaries.push(JSON.parse(line) as TraceSummary);
      } catch {
        // a torn line from a crash: skip it
      }
    }
    return summaries.reverse().slice(0, limit);
  }

  /** The stored JSON text of one trace, or null when there is none. */
  async readText(rolloutId: string): Promise<string | null> {
    if (!ID_PATTERN.test(rolloutId)) return null;
    return readFile(this.fileFor(rolloutId), 'utf8').catch(() => null);
  }

  /** Every stored trace, oldest first. */
  async *all(): AsyncGenerator<TraceRecord> {
    const names = (await readdir(this.dir).catch(() => [] as string[])).filter((n) => n.endsWith('.json')).sort();
    for (const name of names) {
      const text = await readFile(path.join(this.dir, name), 'utf8').catch(() => null);
      if (!text) continue;
      try {
        yield JSON.parse(text) as TraceRecord;
      } catch {
        // skip unreadable files
      }
    }
  }
}

/** One line per rollout for training pipelines: the agent's LLM calls with token ids and logprobs. */
export function trainingExample(record: TraceRecord, options: { allTurns?: boolean } = {}): Record<string, unknown> {
  const turns = record.turns.filter((t) => options.allTurns || t.kind === 'agent');
  return {
    rollout_id: record.rollout_id,
    task_id: record.result.task_id,
    reward: record.result.reward,
    rewards: record.result.rewards,
    model: record.result.endpoint.model,
    error: record.result.error,
    turns: turns.map((t) => ({
      turn: t.turn,
      kind: t.kind,
      messages: (t.request as { messages?: unknown } | null)?.messages ?? null,
      tools: (t.request as { tools?: unknown } | null)?.tools ?? null,
      completion: t.response,
      finish_reason: t.finish_reason,
      prompt_token_ids: t.prompt_token_ids,
      completion_token_ids: t.completion_token_ids,
      completion_tokens: t.completion_tokens,
      per_token_logps: t.per_token_logps,
      upstream_status: t.upstream_status,
    })),
  };
}
