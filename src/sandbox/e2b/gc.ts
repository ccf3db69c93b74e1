import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { SandboxInfo } from 'e2b';
import { readInstanceRecord, type InstanceRecord } from './instances.js';
import { createE2bClient } from './provider.js';
import { E2B_APP_TAG, type E2bSandboxSettings } from './settings.js';

/** alive: its server runs; gone: its server is not running on this host; unknown: another host's, or untagged. */
type InstanceState = 'alive' | 'gone' | 'unknown';
type GcAction = 'kept' | 'killed' | 'would kill' | 'already gone' | 'kill failed';

export interface GcRow {
  sandboxId: string;
  template: string;
  instance: string;
  host: string;
  startedAt: Date;
  state: InstanceState;
  /** Why the state: shown in the table (e.g. `unknown (host X)`, `gone (no process 123)`). */
  reason: string;
  action: GcAction;
  error?: string;
}

/** What judging an instance needs from this host, injected so the rules are testable without processes. */
export interface HostView {
  hostname: string;
  pidExists: (pid: number) => boolean;
  /** When the process with this pid started (epoch ms), or null when that cannot be told. */
  processStartedAt: (pid: number) => number | null;
  instanceRecord: (instanceId: string) => InstanceRecord | null;
}

export function localHostView(instancesDir: string): HostView {
  return {
    hostname: os.hostname(),
    pidExists,
    processStartedAt,
    instanceRecord: (instanceId) => readInstanceRecord(instancesDir, instanceId),
  };
}

/** Signal 0 checks only: ESRCH means no such process; EPERM means one exists (another user's). */
function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Linux: field 22 of /proc/<pid>/stat is the start in clock ticks after boot (USER_HZ, 100 on every Linux we run on). */
function processStartedAt(pid: number): number | null {
  try {
    const bootS = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1]);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: count fields after its closing one.
    const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    return Number.isFinite(bootS) && Number.isFinite(ticks) ? bootS * 1000 + ticks * 10 : null;
  } catch {
    return null;
  }
}

/** btime is in whole seconds and the record is written after its process starts: allow this much before calling it reused. */
const START_TIME_SLACK_MS = 5000;

/** The server's host and pid: its tags, or (sandboxes made before those tags) parsed from `host:pid:hex`. */
function serverOf(metadata: Record<string, string>): { instance: string; host: string | null; pid: number | null } {
  const instance = metadata.serverInstance ?? '';
  const parts = instance.split(':');
  const parsedHost = parts.length >= 3 ? parts.slice(0, -2).join(':') : null;
  const pidText = metadata.serverPid ?? (parts.length >= 3 ? parts.at(-2) : undefined);
  const pid = pidText !== undefined && /^[1-9]\d*$/.test(pidText) ? Number(pidText) : null;
  return { instance, host: metadata.serverHost ?? parsedHost, pid };
}

/**
 * Whether a sandbox's server instance is gone. On this host it is alive only while a process with its pid runs AND its
 * instance record names it: a pid without the record (or with another instance's) is a reused pid, so gone. Another
 * host's instances cannot be checked from here: unknown.
 */
export function judgeInstance(metadata: Record<string, string>, host: HostView): { state: InstanceState; reason: string } {
  const server = serverOf(metadata);
  if (!server.instance || server.host === null || server.pid === null) return { state: 'unknown', reason: 'unknown (no server tags)' };
  if (server.host !== host.hostname) return { state: 'unknown', reason: `unknown (host ${server.host})` };
  if (!host.pidExists(server.pid)) return { state: 'gone', reason: `gone (no process ${server.pid})` };
  const record = host.instanceRecord(server.instance);
  if (record === null) return { state: 'gone', reason: `gone (pid ${server.pid} reused: no instance record)` };
  if (record.instanceId !== server.instance || record.pid !== server.pid) {
    return { state: 'gone', reason: `gone (pid ${server.pid} reused: the record names ${record.instanceId})` };
  }
  // The server died without shutting down (its record stayed) and a later process got its pid.
  const startedAt = host.processStartedAt(server.pid);
  const recordedAt = Date.parse(record.startedAt);
  if (startedAt !== null && Number.isFinite(recordedAt) && startedAt > recordedAt + START_TIME_SLACK_MS) {
    return { state: 'gone', reason: `gone (pid ${server.pid} reused: its process started after the record)` };
  }
  return { state: 'alive', reason: 'alive' };
}

export interface GcOptions {
  settings: E2bSandboxSettings;
  host: HostView;
  dryRun: boolean;
  /** Also kill sandboxes whose instance cannot be judged from here (other hosts, missing tags). */
  allHosts: boolean;
}

/** Every sandbox tagged with this project's app tag, all pages (running and paused: both cost). */
async function listTagged(settings: E2bSandboxSettings): Promise<{ sandboxes: SandboxInfo[]; kill: (id: string) => Promise<boolean> }> {
  const client = createE2bClient(settings);
  const paginator = client.Sandbox.list({ query: { metadata: { app: E2B_APP_TAG } } });
  const sandboxes: SandboxInfo[] = [];
  while (paginator.hasNext) sandboxes.push(...(await paginator.nextItems()));
  return { sandboxes, kill: (id) => client.Sandbox.kill(id) };
}

/** Lists this project's sandboxes, judges each one's server instance, and kills the orphans (unless a dry run). */
export async function collectGarbage(options: GcOptions): Promise<GcRow[]> {
  const { sandboxes, kill } = await listTagged(options.settings);
  const rows: GcRow[] = [];
  for (const sandbox of sandboxes) {
    // The list is filtered by the tag already; this makes sure nothing else is ever touched, whatever the server returned.
    if (sandbox.metadata.app !== E2B_APP_TAG) continue;
    const { state, reason } = judgeInstance(sandbox.metadata, options.host);
    const row: GcRow = {
      sandboxId: sandbox.sandboxId,
      template: sandbox.name ?? sandbox.templateId,
      instance: sandbox.metadata.serverInstance ?? '-',
      host: serverOf(sandbox.metadata).host ?? '-',
      startedAt: sandbox.startedAt,
      state,
      reason,
      action: 'kept',
    };
    const orphan = state === 'gone' || (state === 'unknown' && options.allHosts);
    if (orphan && options.dryRun) row.action = 'would kill';
    else if (orphan) {
      try {
        row.action = (await kill(sandbox.sandboxId)) ? 'killed' : 'already gone';
      } catch (error) {
        row.action = 'kill failed';
        row.error = error instanceof Error ? error.message : String(error);
      }
    }
    rows.push(row);
  }
  return rows;
}
