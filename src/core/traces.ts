import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readdir, readFile, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { RolloutResult } from './rollout/schema.js';
import { documentChunks, readTraceEnds, turnTexts } from './trace/document.js';
import { LEGACY_TRACE_EXTENSION, TRACE_EXTENSION, type StoredTurn, type TraceRecord, type TraceSummary } from './trace/format.js';
import { readLines } from './trace/lines.js';
import { inspectTraceFile, markInterrupted, type TraceFileState } from './trace/recovery.js';
import { buildCatalog, readV1Resource, readV2Resource, type TraceCatalog, type TraceContent } from './trace/resource.js';
import { ROLLOUT_ID_PATTERN, type TraceRef } from './trace/uris.js';
import { TraceWriter, type TraceBeginInfo } from './trace/writer.js';

export type { TraceSummary } from './trace/format.js';
export { MAX_ANSWER_BYTES, type TraceContent } from './trace/resource.js';
export { scrubSecrets } from './trace/scrub.js';
export { parseTraceUri, TRACE_URI_PREFIX, traceUri } from './trace/uris.js';
export type { TraceBeginInfo, TraceWriter } from './trace/writer.js';

/**
 * 256 MiB: eight requests at the proxy's default cap (OPENCODE_ENV_MAX_REQUEST_MB, 32), far beyond what a
 * normal rollout records (a few MiB), and half of the longest string V8 can hold, so a consumer that loads a
 * whole trace into memory (JSON.parse, Python's json.load) still can.
 */
const DEFAULT_MAX_TRACE_BYTES = 256 * 1024 * 1024;

const INDEX_FILE = 'index.jsonl';
/** Catalogs of large traces kept for reading their turns; each is small (offsets and a brief per turn). */
const CACHED_CATALOGS = 8;

/** A valid rollout id that does not name the index itself. */
function isTraceId(id: string): boolean {
  return ROLLOUT_ID_PATTERN.test(id) && `${id}${TRACE_EXTENSION}` !== INDEX_FILE;
}

export function newRolloutId(now = new Date()): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `rollout-${stamp}-${randomBytes(4).toString('hex')}`;
}

/** A finished trace, opened for reading one turn at a time. */
export interface StoredTrace {
  rollout_id: string;
  created_at: string;
  result: RolloutResult;
  turns(): AsyncIterable<StoredTurn>;
}

export interface TraceStoreOptions {
  /** OPENCODE_ENV_MAX_TRACE_MB in bytes: past it, turns are stored without their bodies. */
  maxTraceBytes?: number;
}

type TraceFile = { id: string; version: 1 | 2; file: string };

/**
 * Rollout traces, one file each, written as the rollout runs (see trace/format.ts), with an append-only index
 * for listing. The index is a cache: listing also finds traces missing from it (a crash, a full disk), and
 * finishes traces whose writer died as `interrupted`. That happens on first use, never at server start.
 */
export class TraceStore {
  readonly maxTraceBytes: number;
  private readonly storedListeners = new Set<(rolloutId: string) => void>();
  /** Traces this store is writing: in progress, whatever their files say. */
  private readonly writing = new Set<string>();
  private readonly inspections = new Map<string, Promise<TraceFileState & { recovered?: boolean }>>();
  /** Traces known to have their result line: nothing more to check before reading them. */
  private readonly finished = new Set<string>();
  private readonly catalogs = new Map<string, { size: number; mtimeMs: number; catalog: Promise<TraceCatalog | null> }>();
  private firstScan: Promise<unknown> | null = null;

  constructor(
    readonly dir: string,
    options: TraceStoreOptions = {},
  ) {
    this.maxTraceBytes = options.maxTraceBytes ?? DEFAULT_MAX_TRACE_BYTES;
  }

  /** Calls `listener` after each stored trace (e.g. to tell MCP clients the resource list changed). */
  onStored(listener: (rolloutId: string) => void): () => void {
    this.storedListeners.add(listener);
    return () => void this.storedListeners.delete(listener);
  }

  /** Where the trace of `rolloutId` is written. */
  fileFor(rolloutId: string): string {
    if (!isTraceId(rolloutId)) throw new Error(`not a rollout id: ${JSON.stringify(rolloutId)}`);
    return path.join(this.dir, `${rolloutId}${TRACE_EXTENSION}`);
  }

  /** Starts the trace of a rollout: its header is written now, its turns as they come, its result by `finish`. */
  begin(info: TraceBeginInfo, secrets: Array<string | undefined>): TraceWriter {
    const id = info.rollout_id;
    const file = this.fileFor(id);
    this.writing.add(id);
    // First use: find what earlier runs left unfinished, in the background.
    this.firstScan ??= this.list().catch(() => undefined);
    return new TraceWriter(file, info, secrets, this.maxTraceBytes, {
      finished: (summary) => this.addToIndex(summary),
      settled: () => void this.writing.delete(id),
    });
  }

  /** Newest first (in the order they finished). */
  async list(limit = Infinity): Promise<TraceSummary[]> {
    const files = await this.traceFiles();
    const known = await this.readIndex();
    for (const { id, version } of files.values()) {
      if (version !== 2 || known.has(id) || this.writing.has(id)) continue;
      const state = await this.inspect(id);
      if (state.state !== 'finished') continue;
      // Finished but not indexed: its index line was lost (or it was just recovered, and indexed then).
      if (!state.recovered) await this.appendIndexLine(state.summary).catch(() => undefined);
      known.set(id, state.summary);
    }
    return [...known.values()]
      .filter((summary) => files.has(summary.rollout_id))
      .reverse()
      .slice(0, limit);
  }

  /** One resource of a trace (see trace/uris.ts), or null when there is no such thing. */
  async readResource(ref: TraceRef): Promise<TraceContent | null> {
    const located = await this.locate(ref.rolloutId);
    if (!located) return null;
    if (located.version === 1) return readV1Resource(located.file, ref);
    await this.settle(ref.rolloutId);
    return readV2Resource(located.file, ref, () => this.catalog(located));
  }

  /** The whole trace as one JSON document (version 1's shape), in chunks; null when there is none. */
  async documentChunks(rolloutId: string): Promise<AsyncIterable<string> | null> {
    const located = await this.locate(rolloutId);
    if (!located) return null;
    if (located.version === 1) return createReadStream(located.file, { encoding: 'utf8' }) as AsyncIterable<string>;
    await this.settle(rolloutId);
    const ends = await readTraceEnds(located.file);
    return ends ? documentChunks(located.file, ends) : null;
  }

  /** Every finished trace, oldest first. */
  async *all(): AsyncGenerator<StoredTrace> {
    await this.list(0); // finishes interrupted traces first
    for (const located of [...(await this.traceFiles()).values()].sort((a, b) => a.id.localeCompare(b.id))) {
      const trace = await this.open(located).catch(() => null);
      if (trace) yield trace;
    }
  }

  private async open(located: TraceFile): Promise<StoredTrace | null> {
    if (located.version === 1) {
      // Version 1 is one document: it can only be read whole.
      const record = JSON.parse(await readFile(located.file, 'utf8')) as TraceRecord;
      if (!record.result) return null;
      return { rollout_id: record.rollout_id, created_at: record.created_at, result: record.result, turns: () => toAsync(record.turns) };
    }
    const ends = await readTraceEnds(located.file);
    if (!ends?.result) return null;
    return {
      rollout_id: ends.header.rollout_id,
      created_at: ends.header.created_at,
      result: ends.result.result,
      turns: () => parsedTurns(located.file),
    };
  }

  /** The trace's file: version 2 if there is one, else version 1. */
  private async locate(rolloutId: string): Promise<TraceFile | null> {
    if (!isTraceId(rolloutId)) return null;
    for (const [version, extension] of [
      [2, TRACE_EXTENSION],
      [1, LEGACY_TRACE_EXTENSION],
    ] as const) {
      const file = path.join(this.dir, `${rolloutId}${extension}`);
      if (
        await stat(file).then(
          (s) => s.isFile(),
          () => false,
        )
      )
        return { id: rolloutId, version, file };
    }
    return null;
  }

  private async traceFiles(): Promise<Map<string, TraceFile>> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const files = new Map<string, TraceFile>();
    for (const name of names.sort()) {
      for (const [version, extension] of [
        [2, TRACE_EXTENSION],
        [1, LEGACY_TRACE_EXTENSION],
      ] as const) {
        const id = name.slice(0, -extension.length);
        if (name.endsWith(extension) && isTraceId(id) && !files.has(id)) {
          files.set(id, { id, version, file: path.join(this.dir, name) });
        }
      }
    }
    return files;
  }

  /** The index, in order; a later line for the same rollout replaces an earlier one. */
  private async readIndex(): Promise<Map<string, TraceSummary>> {
    const known = new Map<string, TraceSummary>();
    try {
      for await (const { bytes } of readLines(path.join(this.dir, INDEX_FILE))) {
        try {
          const summary = JSON.parse(bytes.toString('utf8')) as TraceSummary;
          known.delete(summary.rollout_id);
          known.set(summary.rollout_id, summary);
        } catch {
          // a torn line from a crash or a full disk: listing finds its trace anyway
        }
      }
    } catch {
      // no index yet
    }
    return known;
  }

  /** A failed append (disk full) is cut off again, so the index never holds half a line. */
  private async appendIndexLine(summary: TraceSummary): Promise<void> {
    const handle = await open(path.join(this.dir, INDEX_FILE), 'a', 0o600);
    try {
      const { size } = await handle.stat();
      try {
        await handle.appendFile(`${JSON.stringify(summary)}\n`);
      } catch (error) {
        // Another process's line appended meanwhile may go too: listing finds its trace anyway.
        await handle.truncate(size).catch(() => undefined);
        throw error;
      }
    } finally {
      await handle.close();
    }
  }

  private async addToIndex(summary: TraceSummary): Promise<void> {
    try {
      await this.appendIndexLine(summary);
    } finally {
      // The trace is stored (and listed) whatever the index or a listener does.
      for (const listener of this.storedListeners) {
        try {
          listener(summary.rollout_id);
        } catch {
          // a listener's failure is its own
        }
      }
    }
  }

  /** Before reading a trace: finishes it as interrupted if its writer is gone. */
  private async settle(rolloutId: string): Promise<void> {
    if (!this.writing.has(rolloutId) && !this.finished.has(rolloutId)) await this.inspect(rolloutId);
  }

  /** A version-2 trace's state, finishing it as interrupted when its writer is gone; one inspection per trace at a time. */
  private inspect(rolloutId: string): Promise<TraceFileState & { recovered?: boolean }> {
    let pending = this.inspections.get(rolloutId);
    if (!pending) {
      pending = this.inspectNow(rolloutId).finally(() => this.inspections.delete(rolloutId));
      this.inspections.set(rolloutId, pending);
    }
    return pending;
  }

  private async inspectNow(rolloutId: string): Promise<TraceFileState & { recovered?: boolean }> {
    const file = this.fileFor(rolloutId);
    const state = await inspectTraceFile(file).catch((): TraceFileState => ({ state: 'unreadable' }));
    if (state.state === 'finished') this.finished.add(rolloutId);
    if (state.state === 'empty') await unlink(file).catch(() => undefined);
    if (state.state !== 'interrupted') return state;
    const summary = await markInterrupted(file).catch(() => null);
    if (!summary) return { state: 'in_progress' };
    await this.addToIndex(summary).catch(() => undefined);
    this.finished.add(rolloutId);
    return { state: 'finished', summary, recovered: true };
  }

  private async catalog(located: TraceFile): Promise<TraceCatalog | null> {
    const { size, mtimeMs } = await stat(located.file);
    const cached = this.catalogs.get(located.id);
    this.catalogs.delete(located.id);
    if (cached && cached.size === size && cached.mtimeMs === mtimeMs) {
      this.catalogs.set(located.id, cached);
      return cached.catalog;
    }
    const catalog = buildCatalog(located.file).catch(() => null);
    this.catalogs.set(located.id, { size, mtimeMs, catalog });
    for (const id of this.catalogs.keys()) {
      if (this.catalogs.size <= CACHED_CATALOGS) break;
      this.catalogs.delete(id);
    }
    return catalog;
  }
}

async function* toAsync<T>(items: T[]): AsyncGenerator<T> {
  for (const item of items) yield item;
}

async function* parsedTurns(file: string): AsyncGenerator<StoredTurn> {
  for await (const text of turnTexts(file)) {
    try {
      yield JSON.parse(text) as StoredTurn;
    } catch {
      // a line we did not write
    }
  }
}

/** One line per rollout for training pipelines, as text chunks: the agent's LLM calls with token ids and logprobs. */
export async function* trainingExampleChunks(trace: StoredTrace, options: { allTurns?: boolean } = {}): AsyncGenerator<string> {
  const { result } = trace;
  const head = JSON.stringify({
    rollout_id: trace.rollout_id,
    task_id: result.task_id,
    reward: result.reward,
    rewards: result.rewards,
    model: result.endpoint.model,
    error: result.error,
  });
  yield `${head.slice(0, -1)},"turns":[`;
  let first = true;
  for await (const t of trace.turns()) {
    if (!options.allTurns && t.kind !== 'agent') continue;
    const example = {
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
      ...(t.dropped ? { dropped: t.dropped } : {}),
    };
    yield `${first ? '' : ','}${JSON.stringify(example)}`;
    first = false;
  }
  yield ']}\n';
}
