import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { loadConfig } from '../config.js';
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

/** `opencode-env traces export`: JSONL, one rollout per line with its agent turns' tokens and logprobs. */
export async function exportTraces(options: { out?: string; includeFailed?: boolean; allTurns?: boolean }): Promise<void> {
  const out = options.out ? createWriteStream(options.out) : process.stdout;
  let written = 0;
  let skipped = 0;
  for await (const trace of store().all()) {
    if (!options.includeFailed && (trace.result.error !== null || trace.result.reward === null)) {
      skipped += 1;
      continue;
    }
    for await (const chunk of trainingExampleChunks(trace, { allTurns: options.allTurns ?? false })) await write(out, chunk);
    written += 1;
  }
  if (out !== process.stdout) await new Promise<void>((resolve) => (out as ReturnType<typeof createWriteStream>).end(resolve));
  process.stderr.write(
    `exported ${written} rollouts${skipped ? ` (skipped ${skipped} without a reward; --include-failed keeps them)` : ''}\n`,
  );
}
