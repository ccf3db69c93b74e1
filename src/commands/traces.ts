import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import path from 'node:path';
import { loadConfig } from '../config.js';
import { TraceStore, trainingExample } from '../core/traces.js';

function store(): TraceStore {
  return new TraceStore(path.join(loadConfig().dataDir, 'traces'));
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

/** `opencode-env traces show ID`: the stored JSON. */
export async function showTrace(rolloutId: string): Promise<number> {
  const text = await store().readText(rolloutId);
  if (text === null) {
    process.stderr.write(`no trace ${rolloutId}\n`);
    return 1;
  }
  process.stdout.write(`${text}\n`);
  return 0;
}

/** `opencode-env traces export`: JSONL, one rollout per line with its agent turns' tokens and logprobs. */
export async function exportTraces(options: { out?: string; includeFailed?: boolean; allTurns?: boolean }): Promise<void> {
  const out = options.out ? createWriteStream(options.out) : process.stdout;
  let written = 0;
  let skipped = 0;
  for await (const record of store().all()) {
    if (!options.includeFailed && (record.result.error !== null || record.result.reward === null)) {
      skipped += 1;
      continue;
    }
    const line = `${JSON.stringify(trainingExample(record, { allTurns: options.allTurns ?? false }))}\n`;
    if (!out.write(line)) await once(out, 'drain');
    written += 1;
  }
  if (out !== process.stdout) await new Promise<void>((resolve) => (out as ReturnType<typeof createWriteStream>).end(resolve));
  process.stderr.write(
    `exported ${written} rollouts${skipped ? ` (skipped ${skipped} without a reward; --include-failed keeps them)` : ''}\n`,
  );
}
