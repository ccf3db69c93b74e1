import { createWriteStream } from 'node:fs';
import { rename } from 'node:fs/promises';
import { once } from 'node:events';
import { traceTokenSequences } from '../core/export/trace-tokens.js';
import type { TraceStore } from '../core/traces.js';

export interface TokensFileTally {
  rollouts: number;
  sequences: number;
  prefixBreaks: number;
  /** Rollouts left out because their turns lack token ids (see token-sequences.ts). */
  flagged: number;
}

/**
 * A batch's training sequences (`traces export --format tokens` for just these rollouts), written whole: a file that
 * exists is complete. Rollouts without a reward (an infrastructure failure) are left out, as the export does.
 */
export async function writeBatchTokens(traces: TraceStore, rolloutIds: ReadonlySet<string>, file: string): Promise<TokensFileTally> {
  const temporary = `${file}.${process.pid}.tmp`;
  const out = createWriteStream(temporary);
  const tally: TokensFileTally = { rollouts: 0, sequences: 0, prefixBreaks: 0, flagged: 0 };
  try {
    for await (const trace of traces.all()) {
      if (!rolloutIds.has(trace.rollout_id) || trace.result.reward === null || trace.result.error !== null) continue;
      const { sequences, report } = await traceTokenSequences(traces, trace);
      tally.rollouts += 1;
      if (report.flagged) {
        tally.flagged += 1;
        continue;
      }
      tally.prefixBreaks += report.prefix_breaks;
      for (const sequence of sequences) {
        tally.sequences += 1;
        if (!out.write(`${JSON.stringify(sequence)}\n`)) await once(out, 'drain');
      }
    }
  } finally {
    await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
  }
  await rename(temporary, file);
  return tally;
}
