import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * A live server instance's record on its host: `<dataDir>/e2b-instances/<instance>.json`, written when its E2B provider
 * starts and removed when it shuts down. `gc` counts an instance on this host as alive only if its pid exists and this
 * file names it, so a reused pid (the server died without shutting down) does not keep its sandboxes forever.
 */
export interface InstanceRecord {
  instanceId: string;
  pid: number;
  startedAt: string;
}

/** The subdirectory of the data directory that holds the records. */
export const INSTANCES_SUBDIR = 'e2b-instances';

/** The record's path: the instance id (`host:pid:hex`) made safe as a file name. */
function instanceFilePath(dir: string, instanceId: string): string {
  return path.join(dir, `${instanceId.replace(/[^A-Za-z0-9._-]/g, '_')}.json`);
}

/** Synchronous: the provider writes it in its constructor, once per process. */
export function writeInstanceRecord(dir: string, record: InstanceRecord): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(instanceFilePath(dir, record.instanceId), `${JSON.stringify(record)}\n`, { mode: 0o600 });
}

/** Never throws: it runs at shutdown, where a leftover record only keeps gc from this instance's sandboxes while its pid is reused. */
export function removeInstanceRecord(dir: string, instanceId: string): void {
  try {
    rmSync(instanceFilePath(dir, instanceId), { force: true });
  } catch {
    // Nothing to do about it at shutdown.
  }
}

/** The record for this instance id, or null when there is none (or it cannot be read or parsed). */
export function readInstanceRecord(dir: string, instanceId: string): InstanceRecord | null {
  try {
    const parsed = JSON.parse(readFileSync(instanceFilePath(dir, instanceId), 'utf8')) as Partial<InstanceRecord>;
    if (typeof parsed.instanceId !== 'string' || typeof parsed.pid !== 'number') return null;
    return { instanceId: parsed.instanceId, pid: parsed.pid, startedAt: String(parsed.startedAt ?? '') };
  } catch {
    return null;
  }
}
