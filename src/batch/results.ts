import { open, readFile, type FileHandle } from 'node:fs/promises';
import type { RolloutResult } from '../core/rollout/schema.js';
import { pairKey, type BatchPair } from './plan.js';

/** One line of DIR/results.jsonl: the final attempt of one (task, sample) pair. */
export interface ResultLine {
  task_id: string;
  sample: number;
  group_id: string;
  /** The trace of the final attempt (earlier attempts have their own traces). */
  rollout_id: string;
  reward: number | null;
  rewards: Record<string, number>;
  error: string | null;
  /** A rollout's error_kind, or `invalid_input` when the rollout was refused before it started. */
  error_kind: string | null;
  budget_exhausted: RolloutResult['budget_exhausted'];
  agent_timed_out: boolean;
  wall_s: number;
  timings: RolloutResult['timings'];
  /** The agent's LLM calls (title and auxiliary calls excluded) and their tokens, from the upstream's usage. */
  llm_calls: number;
  prompt_tokens: number;
  completion_tokens: number;
  /** Rollouts run for this pair: 1 + retries. */
  attempts: number;
  /** When the line was written (ISO 8601). */
  finished_at: string;
}

function usageNumber(usage: Record<string, unknown> | null, field: string): number | null {
  const value = usage?.[field];
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

/** The result line of a rollout: what a trainer filters and groups on, without the bulk (that is in the trace). */
export function resultLine(pair: BatchPair, result: RolloutResult, attempts: number): ResultLine {
  const agentTurns = result.proxy_turns.filter((turn) => turn.kind === 'agent');
  let promptTokens = 0;
  let completionTokens = 0;
  for (const turn of agentTurns) {
    promptTokens += usageNumber(turn.usage, 'prompt_tokens') ?? 0;
    // Without a usage block, the sampled tokens the proxy recorded are the next best count.
    completionTokens += usageNumber(turn.usage, 'completion_tokens') ?? turn.completion_token_ids.length;
  }
  return {
    task_id: pair.taskId,
    sample: pair.sample,
    group_id: pair.groupId,
    rollout_id: result.rollout_id,
    reward: result.reward,
    rewards: result.rewards,
    error: result.error,
    error_kind: result.error_kind,
    budget_exhausted: result.budget_exhausted,
    agent_timed_out: result.agent_timed_out,
    wall_s: result.wall_s,
    timings: result.timings,
    llm_calls: agentTurns.length,
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    attempts,
    finished_at: new Date().toISOString(),
  };
}

/**
 * Parses results.jsonl. Only a line ended by a newline counts: the last line of a file cut short by a
 * SIGKILL mid-write has none, and is reported as torn (its rollout ran again on resume). A complete
 * line that does not parse is a damaged file, which is refused rather than silently rerun.
 */
export function parseResults(text: string, file = 'results.jsonl'): { lines: ResultLine[]; tornBytes: number } {
  const end = text.lastIndexOf('\n') + 1;
  const lines: ResultLine[] = [];
  text
    .slice(0, end)
    .split('\n')
    .forEach((line, index) => {
      if (!line.trim()) return;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        throw new Error(`${file}:${index + 1}: not a JSON line; the file is damaged (move it away to start over)`);
      }
      const candidate = parsed as Partial<ResultLine>;
      if (typeof candidate.task_id !== 'string' || typeof candidate.sample !== 'number') {
        throw new Error(`${file}:${index + 1}: not a result line (task_id and sample expected)`);
      }
      lines.push(parsed as ResultLine);
    });
  return { lines, tornBytes: Buffer.byteLength(text.slice(end)) };
}

/** The keys (see pairKey) of the pairs results.jsonl records. */
export function donePairs(lines: readonly ResultLine[]): Set<string> {
  return new Set(lines.map((line) => pairKey(line.task_id, line.sample)));
}

/** Reads results.jsonl; a missing file is an empty one. */
export async function readResults(file: string): Promise<{ lines: ResultLine[]; tornBytes: number }> {
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return '';
    throw error;
  });
  return parseResults(text, file);
}

/**
 * Appends result lines, each written and fsynced before the next, so a SIGKILL loses at most the
 * rollouts in flight. Opening drops a torn last line first: what follows must start on a line of its own.
 */
export class ResultsWriter {
  private queue: Promise<void> = Promise.resolve();

  private constructor(private readonly handle: FileHandle) {}

  static async open(file: string): Promise<ResultsWriter> {
    const handle = await open(file, 'a+');
    const { size } = await handle.stat();
    const { tornBytes } = parseResults((await readFile(file, 'utf8').catch(() => '')) || '', file);
    if (tornBytes > 0) await handle.truncate(size - tornBytes);
    return new ResultsWriter(handle);
  }

  /** Resolves once the line is on disk. */
  append(line: ResultLine): Promise<void> {
    const write = this.queue.then(async () => {
      await this.handle.appendFile(`${JSON.stringify(line)}\n`);
      await this.handle.datasync();
    });
    this.queue = write.catch(() => undefined);
    return write;
  }

  async close(): Promise<void> {
    await this.queue;
    await this.handle.close();
  }
}
