import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { loadConfig } from '../config.js';
import { traceTokenSequences } from '../core/export/trace-tokens.js';
import { TraceStore, trainingExampleChunks } from '../core/traces.js';

function store(): TraceStore {
  return new TraceStore(path.join(loadConfig().dataDir, 'traces'));
}

/** Writes with back-pressure, so a large trace streams through instead of piling up in memory. */
async function write(out: Writable, text: string): Promise<void> {
  if (!out.write(text)) await once(out, 'drain');
}

/** `opencode-env traces list`: newest first, one line each. */
export async function listTraces(options: { limit: string }): Promise<void> {
  const traces = store();
  const summaries = await traces.list(Number(options.limit));
  if (summaries.length === 0) process.stderr.write(`no traces in ${traces.dir}\n`);
  for (const t of summaries) {
    process.stdout.write(
      `${t.rollout_id}\t${t.created_at}\t${t.task_id || '-'}\treward=${t.reward ?? 'null'}\tturns=${t.turns}${t.error ? `\terror=${t.error}` : ''}\n`,
    );
  }
}

/** `opencode-env traces show ID`: the trace as one JSON document, streamed from its file. */
export async function showTrace(rolloutId: string): Promise<number> {
  const chunks = await store().documentChunks(rolloutId);
  if (chunks === null) {
    process.stderr.write(`no trace ${rolloutId}\n`);
    return 1;
  }
  for await (const chunk of chunks) await write(process.stdout, chunk);
  await write(process.stdout, '\n');
  return 0;
}

export interface ExportOptions {
  out?: string;
  includeFailed?: boolean;
  allTurns?: boolean;
  /** turns (default): one rollout per line with its LLM calls; tokens: merged training sequences, one per line. */
  format?: string;
}

/** `opencode-env traces export`: JSONL, in the format asked for. */
export async function exportTraces(options: ExportOptions): Promise<number> {
  const format = options.format ?? 'turns';
  if (format === 'atif') return (await import('./export-atif.js')).exportAtif(store(), options);
  if (format !== 'turns' && format !== 'tokens') {
    process.stderr.write(`unknown --format ${JSON.stringify(format)}: turns, tokens or atif\n`);
    return 2;
  }
  const traces = store();
  const out = options.out ? createWriteStream(options.out) : process.stdout;
  const tally = { rollouts: 0, skipped: 0, sequences: 0, prefixBreaks: 0, flagged: 0 };
  for await (const trace of traces.all()) {
    if (!options.includeFailed && (trace.result.error !== null || trace.result.reward === null)) {
      tally.skipped += 1;
      continue;
    }
    tally.rollouts += 1;
    if (format === 'turns') {
      for await (const chunk of trainingExampleChunks(trace, { allTurns: options.allTurns ?? false })) await write(out, chunk);
      continue;
    }
    const { sequences, report } = await traceTokenSequences(traces, trace);
    if (report.flagged) {
      tally.flagged += 1;
      process.stderr.write(`flagged ${trace.rollout_id}: ${report.flagged} (not exported)\n`);
    }
    tally.prefixBreaks += report.prefix_breaks;
    tally.sequences += sequences.length;
    for (const sequence of sequences) await write(out, `${JSON.stringify(sequence)}\n`);
  }
  if (out !== process.stdout) await new Promise<void>((resolve) => (out as ReturnType<typeof createWriteStream>).end(resolve));
  const skipped = tally.skipped ? ` (skipped ${tally.skipped} without a reward; --include-failed keeps them)` : '';
  process.stderr.write(
    format === 'turns'
      ? `exported ${tally.rollouts} rollouts${skipped}\n`
      : `exported ${tally.sequences} sequences from ${tally.rollouts} rollouts: ${tally.prefixBreaks} prefix breaks, ${tally.flagged} flagged${skipped}\n`,
  );
  return 0;
}
