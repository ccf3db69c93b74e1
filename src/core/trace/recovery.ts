import { appendFile, open, readFile, stat, truncate, unlink } from 'node:fs/promises';
import { summarizeTurn, type ProxyTurn, type ProxyTurnSummary } from '../proxy/types.js';
import { blankRolloutResult, type RolloutResult } from '../rollout/schema.js';
import { parseTraceLine, summaryOf, type StoredTurn, type TraceHeaderLine, type TraceResultLine, type TraceSummary } from './format.js';
import { readFirstLine, readLastLine, readLines } from './lines.js';
import { currentWriter, writerAlive } from './liveness.js';
import { traceUri } from './uris.js';

/**
 * What a trace file's first and last lines say about it, and how an interrupted one is finished: its writer
 * died (SIGKILL, a crash, power loss) before writing the result line, so a result saying so is appended.
 */

const INTERRUPTED_ERROR = 'the server stopped before the rollout finished (interrupted); the trace holds what was recorded until then';

/** A file with no complete line this old is a writer that died before its header: nothing to keep. */
const EMPTY_FILE_GRACE_MS = 60_000;

export type TraceFileState =
  | { state: 'finished'; summary: TraceSummary }
  | { state: 'in_progress' }
  | { state: 'interrupted' }
  /** No complete line at all, long enough ago: removable. */
  | { state: 'empty' }
  | { state: 'unreadable' };

function summaryFromResult(header: TraceHeaderLine, line: TraceResultLine): TraceSummary {
  return summaryOf(header.rollout_id, header.created_at, line.result, line.result.proxy_turns?.length ?? 0);
}

export async function inspectTraceFile(file: string): Promise<TraceFileState> {
  const last = await readLastLine(file);
  if (!last) {
    const { mtimeMs } = await stat(file);
    return Date.now() - mtimeMs > EMPTY_FILE_GRACE_MS ? { state: 'empty' } : { state: 'in_progress' };
  }
  const first = await readFirstLine(file);
  const header = first ? parseTraceLine(first.bytes.toString('utf8')) : null;
  if (header?.type !== 'header') return { state: 'unreadable' };
  const tail = parseTraceLine(last.line.bytes.toString('utf8'));
  if (tail?.type === 'result') return { state: 'finished', summary: summaryFromResult(header, tail) };
  return writerAlive({ pid: header.writer_pid, start: header.writer_start }) ? { state: 'in_progress' } : { state: 'interrupted' };
}

/** The summary a result keeps of a stored turn (dropped arrays count as empty). */
function turnSummary(turn: StoredTurn): ProxyTurnSummary {
  const { dropped: _dropped, ...stored } = turn;
  const summary = summarizeTurn(stored as ProxyTurn);
  return {
    ...summary,
    completion_tokens: summary.completion_tokens ?? [],
    completion_token_ids: summary.completion_token_ids ?? [],
    per_token_logps: summary.per_token_logps ?? [],
  };
}

function interruptedResult(header: TraceHeaderLine, turns: ProxyTurnSummary[], lastWrite: Date): RolloutResult {
  const { spec } = header;
  return {
    ...blankRolloutResult({
      rollout_id: header.rollout_id,
      task_id: spec.task_id ?? '',
      mode: spec.mode,
      endpoint: header.endpoint ?? { name: spec.endpoint ?? '', base_url: '', model: spec.model ?? '' },
      template: spec.template ?? null,
    }),
    wall_s: Math.max(0, Math.round(lastWrite.getTime() - Date.parse(header.created_at)) / 1000),
    proxy_turns: turns,
    error: INTERRUPTED_ERROR,
    error_kind: 'interrupted',
    trace_uri: traceUri(header.rollout_id),
  };
}

/** Takes `<file>.lock` for this process; false when a live process holds it. */
async function lock(file: string): Promise<boolean> {
  const lockFile = `${file}.lock`;
  for (let attempt = 0; attempt < 2; attempt += 1) {
    try {
      const handle = await open(lockFile, 'wx', 0o600);
      await handle.writeFile(JSON.stringify(currentWriter())).finally(() => handle.close());
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const owner = JSON.parse(await readFile(lockFile, 'utf8').catch(() => '{}')) as { pid?: unknown; start?: unknown };
      if (writerAlive({ pid: owner.pid, start: owner.start })) return false;
      await unlink(lockFile).catch(() => undefined);
    }
  }
  return false;
}

/**
 * Appends an `interrupted` result to an unfinished trace whose writer is dead, after cutting off a torn last
 * line; returns its summary (or the existing one if it turned out finished), or null when another process is
 * at it or the file is not a trace.
 */
export async function markInterrupted(file: string): Promise<TraceSummary | null> {
  if (!(await lock(file))) return null;
  try {
    let header: TraceHeaderLine | null = null;
    const turns: ProxyTurnSummary[] = [];
    let completeBytes = 0;
    for await (const { offset, bytes } of readLines(file)) {
      const line = parseTraceLine(bytes.toString('utf8'));
      if (!header) {
        if (line?.type !== 'header') return null;
        header = line;
      } else if (line?.type === 'turn') {
        turns.push(turnSummary(line.data));
      } else if (line?.type === 'result') {
        return summaryFromResult(header, line);
      }
      completeBytes = offset + bytes.length + 1;
    }
    if (!header) return null;
    const { size, mtime } = await stat(file);
    if (size > completeBytes) await truncate(file, completeBytes);
    const result = interruptedResult(header, turns, mtime);
    const line: TraceResultLine = { type: 'result', finished_at: mtime.toISOString(), recovered_at: new Date().toISOString(), result };
    await appendFile(file, `${JSON.stringify(line)}\n`).catch(async (error: unknown) => {
      await truncate(file, completeBytes).catch(() => undefined); // whole lines only, even on a full disk
      throw error;
    });
    return summaryOf(header.rollout_id, header.created_at, result, turns.length);
  } finally {
    await unlink(`${file}.lock`).catch(() => undefined);
  }
}
