import { mkdir, open, truncate, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { ProxyTurn } from '../proxy/types.js';
import type { RolloutResult, RolloutSpec } from '../rollout/schema.js';
import {
  DROPPABLE_TURN_FIELDS,
  summaryOf,
  TRACE_VERSION,
  TURN_LINE_PREFIX,
  TURN_LINE_SUFFIX,
  type DroppedBodies,
  type StoredSpec,
  type TraceHeaderLine,
  type TraceResultLine,
  type TraceSummary,
} from './format.js';
import { jsonBytes } from './json-size.js';
import { currentWriter } from './liveness.js';
import { scrubSecrets } from './scrub.js';

/** What a trace's header records: known as soon as the rollout has an id. */
export interface TraceBeginInfo {
  rollout_id: string;
  created_at: string;
  /** `api_key`, if present, is left out. */
  spec: RolloutSpec | StoredSpec;
  endpoint: RolloutResult['endpoint'];
}

const FS_ERRORS: Record<string, string> = {
  ENOSPC: 'disk full',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EIO: 'I/O error',
  EFBIG: 'file too large',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files in the system',
  EEXIST: 'a trace with this id already exists',
  ENOENT: 'the trace directory disappeared',
};

/** "disk full (ENOSPC)" rather than "ENOSPC: no space left on device, write". */
function describeFsError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  if (code && FS_ERRORS[code]) return `${FS_ERRORS[code]} (${code})`;
  return error instanceof Error ? error.message : String(error);
}

class TraceWriteError extends Error {
  constructor(
    readonly file: string,
    cause: unknown,
  ) {
    super(`could not write ${file}: ${describeFsError(cause)}`, { cause });
    this.name = 'TraceWriteError';
  }
}

export interface TraceWriterEvents {
  /** After the result line is on disk: adds the trace to the index. Its failure does not fail the trace. */
  finished(summary: TraceSummary): Promise<void>;
  /** After finish, whether it succeeded or not. */
  settled(): void;
}

/** Characters encoded and written at a time. */
const WRITE_CHUNK_CHARS = 1024 * 1024;

/** A turn line (see format.ts) as pieces, the turn's JSON not copied into a larger string. */
function turnLinePieces(turnJson: string): string[] {
  return [TURN_LINE_PREFIX, turnJson, `${TURN_LINE_SUFFIX}\n`];
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

const LINE_OVERHEAD_BYTES = Buffer.byteLength(TURN_LINE_PREFIX) + Buffer.byteLength(TURN_LINE_SUFFIX) + 1;

/**
 * Writes one rollout's trace as it happens: the header now, each turn when it completes, the result at the
 * end. Lines are serialised one at a time and written in order through a queue; nothing ever holds the whole
 * trace. Writes never throw: the first failure is remembered and reported by `finish`, which then removes the
 * file (or, if even that fails, leaves it cut back to whole lines: an unfinished trace, which a later start
 * marks interrupted). So a trace is either complete, or well-formed and unfinished, never half a line.
 */
export class TraceWriter {
  private handle: FileHandle | null = null;
  private created = false;
  private queue: Promise<void>;
  /** Bytes on disk that end in a complete line. */
  private committedBytes = 0;
  /** Bytes of every line accepted so far (queued or written): what the budget is measured against. */
  private acceptedBytes = 0;
  private failure: unknown = null;
  private overBudget = false;
  private turnCount = 0;
  private finishing: Promise<void> | null = null;

  constructor(
    readonly file: string,
    private readonly info: TraceBeginInfo,
    private readonly secrets: Array<string | undefined>,
    private readonly budgetBytes: number,
    private readonly events: TraceWriterEvents,
  ) {
    const { api_key: _apiKey, ...spec } = info.spec as RolloutSpec;
    const writer = currentWriter();
    const header: TraceHeaderLine = {
      type: 'header',
      version: TRACE_VERSION,
      rollout_id: info.rollout_id,
      created_at: info.created_at,
      spec,
      endpoint: info.endpoint,
      writer_pid: writer.pid,
      writer_start: writer.start,
    };
    this.queue = this.openFile();
    this.enqueueJson(header);
  }

  /** Turns accepted so far. */
  get turns(): number {
    return this.turnCount;
  }

  /** Queues one completed turn; never throws. Turns after `finish` are ignored. */
  appendTurn(turn: ProxyTurn): void {
    if (this.finishing) return;
    try {
      const line = this.turnLine(turn);
      this.turnCount += 1;
      this.enqueue(line);
    } catch (error) {
      this.failure ??= error;
    }
  }

  /**
   * Writes the result line and closes the file. Rejects with a TraceWriteError naming the file and the cause
   * when any line could not be written; the file is then removed.
   */
  finish(result: RolloutResult): Promise<void> {
    this.finishing ??= this.complete(result).finally(() => this.events.settled());
    return this.finishing;
  }

  private async complete(result: RolloutResult): Promise<void> {
    const line: TraceResultLine = { type: 'result', finished_at: new Date().toISOString(), result };
    this.enqueueJson(line);
    await this.queue;
    if (this.failure === null && this.handle) {
      try {
        await this.handle.close();
      } catch (error) {
        this.failure = error;
      }
      this.handle = null;
    }
    if (this.failure !== null) {
      await this.discard();
      throw new TraceWriteError(this.file, this.failure);
    }
    const summary = summaryOf(this.info.rollout_id, this.info.created_at, result, this.turnCount);
    await this.events.finished(JSON.parse(scrubSecrets(JSON.stringify(summary), this.secrets)) as TraceSummary).catch(() => undefined);
  }

  private turnLine(turn: ProxyTurn): string[] {
    const written = this.acceptedBytes;
    if (this.overBudget) return this.withoutBodies(turn, written, 'later');
    let bytes: number;
    try {
      // Measured before serialising: a turn over the budget is never turned into one more copy of itself.
      bytes = jsonBytes(turn) + LINE_OVERHEAD_BYTES;
    } catch (error) {
      return this.withoutBodies(turn, written, { error: (error as Error).message });
    }
    if (written + bytes > this.budgetBytes) {
      this.overBudget = true;
      return this.withoutBodies(turn, written, 'first');
    }
    try {
      return turnLinePieces(scrubSecrets(JSON.stringify(turn), this.secrets));
    } catch (error) {
      // e.g. "Invalid string length": one turn larger than a string can be
      return this.withoutBodies(turn, written, { error: (error as Error).message });
    }
  }

  /**
   * The turn with its bodies replaced by null and a marker saying what was dropped, why, and how big it was.
   * `why`: the first turn over the budget, a later one, or the error that made the turn unserialisable.
   */
  private withoutBodies(turn: ProxyTurn, written: number, why: 'first' | 'later' | { error: string }): string[] {
    const fieldBytes: DroppedBodies['field_bytes'] = {};
    const stripped: Record<string, unknown> = { ...turn };
    for (const field of DROPPABLE_TURN_FIELDS) {
      try {
        fieldBytes[field] = jsonBytes(turn[field]);
      } catch {
        fieldBytes[field] = null;
      }
      stripped[field] = null;
    }
    const sizes = Object.values(fieldBytes);
    // The full line is the stripped one with each `null` (4 bytes) replaced by the field's JSON.
    const turnBytes = sizes.every((size) => typeof size === 'number')
      ? jsonBytes(stripped) + LINE_OVERHEAD_BYTES + sizes.reduce<number>((sum, size) => sum + (size ?? 0) - 4, 0)
      : null;
    const lost = 'its request, response, logprobs and token ids';
    const budget = `the trace budget of ${this.budgetBytes} bytes (OPENCODE_ENV_MAX_TRACE_MB)`;
    const size = `${turnBytes ?? 'unknown'} bytes`;
    const message =
      why === 'first'
        ? `this turn (${size}) would take the trace past ${budget}, with ${written} bytes already stored: ` +
          `it and every later turn are stored without ${lost}`
        : why === 'later'
          ? `an earlier turn reached ${budget}: this turn (${size}) is stored without ${lost}`
          : `this turn is too large to serialise as JSON (${why.error}): stored without ${lost}`;
    const dropped: DroppedBodies = {
      reason: typeof why === 'string' ? 'trace_budget' : 'unserialisable',
      message,
      turn_bytes: turnBytes,
      field_bytes: fieldBytes,
      written_bytes: written,
      budget_bytes: this.budgetBytes,
    };
    const json = scrubSecrets(JSON.stringify({ ...stripped, dropped }), this.secrets);
    return turnLinePieces(json);
  }

  private enqueueJson(value: unknown): void {
    try {
      this.enqueue([scrubSecrets(JSON.stringify(value), this.secrets), '\n']);
    } catch (error) {
      this.failure ??= error;
    }
  }

  /**
   * Lines wait as the strings they are made of (joining them, or a copy in bytes, would double a large turn) and
   * are encoded a chunk at a time.
   */
  private enqueue(line: string[]): void {
    this.acceptedBytes += line.reduce((sum, piece) => sum + Buffer.byteLength(piece), 0);
    this.queue = this.queue.then(() => this.write(line));
  }

  private async openFile(): Promise<void> {
    try {
      await mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
      this.handle = await open(this.file, 'wx', 0o600);
      this.created = true;
    } catch (error) {
      this.failure ??= error;
    }
  }

  /** Writes one whole line at the end of what is committed; never rejects. */
  private async write(line: string[]): Promise<void> {
    if (this.failure !== null || !this.handle) return;
    let done = 0;
    try {
      for (const piece of line) {
        for (let from = 0; from < piece.length;) {
          let to = Math.min(piece.length, from + WRITE_CHUNK_CHARS);
          if (to < piece.length && isHighSurrogate(piece.charCodeAt(to - 1))) to += 1; // never split a character
          const chunk = Buffer.from(piece.slice(from, to));
          for (let offset = 0; offset < chunk.length;) {
            const { bytesWritten } = await this.handle.write(chunk, offset, chunk.length - offset, this.committedBytes + done);
            if (bytesWritten === 0) throw Object.assign(new Error('no progress writing'), { code: 'EIO' });
            offset += bytesWritten;
            done += bytesWritten;
          }
          from = to;
        }
      }
      this.committedBytes += done;
    } catch (error) {
      this.failure = error;
      // Part of a line would make the file unreadable: cut it back to whole lines.
      if (done > 0) await this.handle.truncate(this.committedBytes).catch(() => undefined);
    }
  }

  private async discard(): Promise<void> {
    await this.handle?.close().catch(() => undefined);
    this.handle = null;
    if (!this.created) return;
    try {
      await unlink(this.file);
    } catch {
      // Left in place, it must at least be whole lines: an unfinished trace that a later start marks interrupted.
      await truncate(this.file, this.committedBytes).catch(() => undefined);
    }
  }
}
