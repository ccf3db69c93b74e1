import path from 'node:path';
import { loadConfig } from '../config.js';
import { ConfigError } from '../errors.js';
import { collectGarbage, localHostView, type GcRow } from '../sandbox/e2b/gc.js';
import { INSTANCES_SUBDIR } from '../sandbox/e2b/instances.js';

export interface GcCommandOptions {
  dryRun?: boolean;
  allHosts?: boolean;
}

/** Aligned columns, so the table reads in a terminal and splits on runs of spaces. */
function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows]
    .map((cells) =>
      cells
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function summary(rows: GcRow[], dryRun: boolean): string {
  const count = (predicate: (row: GcRow) => boolean) => rows.filter(predicate).length;
  const states = `${count((r) => r.state === 'alive')} alive, ${count((r) => r.state === 'gone')} gone, ${count((r) => r.state === 'unknown')} unknown`;
  const done = dryRun
    ? `would kill ${count((r) => r.action === 'would kill')} (dry run)`
    : `killed ${count((r) => r.action === 'killed' || r.action === 'already gone')}${count((r) => r.action === 'kill failed') ? `, ${count((r) => r.action === 'kill failed')} failed` : ''}`;
  const unjudged = count((r) => r.state === 'unknown' && r.action === 'kept');
  const hint = unjudged ? `; kept ${unjudged} of other hosts or untagged (--all-hosts kills them)` : '';
  return `${rows.length} opencode-env sandboxes: ${states}; ${done}${hint}`;
}

/**
 * `opencode-env gc [--dry-run] [--all-hosts]`: kills the E2B sandboxes whose server instance is gone (and, with
 * --all-hosts, those of other hosts, which cannot be judged from here). Exit 0, or 1 if a kill failed.
 */
export async function runGcCommand(options: GcCommandOptions): Promise<number> {
  const config = loadConfig();
  const settings = config.sandbox.e2b;
  if (!settings) throw new ConfigError('opencode-env gc needs E2B_API_KEY (your E2B API key); it is not set');
  const dryRun = options.dryRun ?? false;
  const rows = await collectGarbage({
    settings,
    host: localHostView(path.join(config.dataDir, INSTANCES_SUBDIR)),
    dryRun,
    allHosts: options.allHosts ?? false,
  });
  const header = ['SANDBOX', 'TEMPLATE', 'INSTANCE', 'HOST', 'STARTED', 'STATE', 'ACTION'];
  const cells = rows.map((r) => [
    r.sandboxId,
    r.template,
    r.instance,
    r.host,
    r.startedAt.toISOString(),
    r.reason,
    r.error ? `${r.action}: ${r.error}` : r.action,
  ]);
  if (rows.length > 0) process.stdout.write(`${table(header, cells)}\n`);
  process.stdout.write(`${summary(rows, dryRun)}\n`);
  return rows.some((r) => r.action === 'kill failed') ? 1 : 0;
}
