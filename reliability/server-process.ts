import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { processTree, type SeenProcess } from './leftovers.js';
import { KEY_ENV } from './secrets.js';
import type { Workspace } from './server.js';

/** The environment every server under attack gets: the workspace's directories, debug logs and the fake keys. */
export function serverEnv(workspace: Workspace, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: workspace.home,
    OPENCODE_ENV_SANDBOX_DIR: workspace.sandboxRoot,
    OPENCODE_ENV_DATA_DIR: workspace.dataDir,
    // debug: the server then logs every sandbox it creates, which tells the leftover scan what to look for.
    OPENCODE_ENV_LOG_LEVEL: 'debug',
    ...KEY_ENV,
    ...extra,
  };
}

/** What the harness needs of a server process, whatever its transport: its stderr, its sandboxes, its exit, its memory. */
export class ServerProcess {
  readonly exited: Promise<void>;
  /** The server's process tree when it was last told to stop: none of it may outlive the server. */
  treeAtStop: SeenProcess[] = [];
  private stderrText = '';
  private pendingLine = '';

  constructor(
    readonly label: string,
    readonly workspace: Workspace,
    readonly child: ChildProcessWithoutNullStreams,
  ) {
    this.exited = new Promise((resolve) => {
      child.once('exit', () => resolve());
      child.once('error', () => resolve());
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text: string) => this.onStderr(text));
  }

  get pid(): number {
    return this.child.pid!;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  stderr(): string {
    return this.stderrText + this.pendingLine;
  }

  private onStderr(text: string): void {
    const lines = (this.pendingLine + text).split('\n');
    this.pendingLine = lines.pop() ?? '';
    for (const line of lines) {
      this.stderrText += `${line}\n`;
      try {
        this.noteSandboxIds(JSON.parse(line));
      } catch {
        // not a JSON log line
      }
    }
  }

  /** Sandbox ids named in log lines or results (`sandbox`, `sandbox_id`, `last_sandbox_id`): what the leftover scan looks for. */
  protected noteSandboxIds(value: unknown): void {
    if (!value || typeof value !== 'object') return;
    for (const key of ['sandbox', 'sandbox_id', 'last_sandbox_id']) {
      const id = (value as Record<string, unknown>)[key];
      if (typeof id === 'string' && id) this.workspace.sandboxIds.add(id);
    }
  }

  /** Sends `signal` to the server process. */
  async kill(signal: NodeJS.Signals): Promise<void> {
    if (this.alive) this.treeAtStop = await processTree(this.pid);
    this.child.kill(signal);
  }

  /** Whether the process exited within `timeoutMs`. */
  async waitExit(timeoutMs: number): Promise<boolean> {
    if (!this.alive) return true;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    const done = await Promise.race([this.exited.then(() => true as const), timedOut]);
    clearTimeout(timer);
    return done;
  }

  private status(field: 'VmHWM' | 'VmRSS'): number {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN) / 1024;
  }

  /** Peak resident memory of the server process so far (VmHWM), in MiB. */
  peakRssMiB(): number {
    return this.status('VmHWM');
  }

  /** Resident memory of the server process now (VmRSS), in MiB. */
  rssMiB(): number {
    return this.status('VmRSS');
  }
}
