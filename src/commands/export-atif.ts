import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AtifBuilder, type AtifAgent } from '../core/export/atif.js';
import { installedOpencodeVersion } from '../core/rollout/opencode-binary.js';
import type { TraceStore } from '../core/traces.js';

/** opencode, at the version this server runs (the installed opencode-ai): traces do not record it. */
function opencodeAgent(): AtifAgent {
  let version = 'unknown';
  try {
    version = installedOpencodeVersion();
  } catch {
    // opencode-ai is not installed here (OPENCODE_ENV_OPENCODE_BIN names another binary): the version stays unknown.
  }
  return { name: 'opencode', version };
}

/** `opencode-env traces export --format atif --out DIR`: DIR/<rollout_id>/trajectory.json per rollout (Harbor's ATIF). */
export async function exportAtif(traces: TraceStore, options: { out?: string; includeFailed?: boolean }): Promise<number> {
  if (!options.out) {
    process.stderr.write('--format atif writes one trajectory.json per rollout: give --out DIR\n');
    return 2;
  }
  const agent = opencodeAgent();
  let exported = 0;
  let skipped = 0;
  for await (const trace of traces.all()) {
    if (!options.includeFailed && (trace.result.error !== null || trace.result.reward === null)) {
      skipped += 1;
      continue;
    }
    // Turns are streamed: the builder keeps the steps, never the requests (each repeats the whole conversation).
    const builder = new AtifBuilder(agent, trace.rollout_id);
    for await (const turn of trace.turns()) builder.add(turn);
    const dir = path.join(options.out, trace.rollout_id);
    await mkdir(dir, { recursive: true });
    // Written whole then renamed: a reader never sees half a trajectory.
    const file = path.join(dir, 'trajectory.json');
    await writeFile(`${file}.tmp`, `${JSON.stringify(builder.finish(trace.result), null, 2)}\n`);
    await rename(`${file}.tmp`, file);
    exported += 1;
  }
  const note = skipped ? ` (skipped ${skipped} without a reward; --include-failed keeps them)` : '';
  process.stderr.write(`exported ${exported} trajectories to ${options.out}${note}\n`);
  return 0;
}
