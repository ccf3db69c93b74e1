import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import os from 'node:os';
import { findProcessesByEnvMarker, killAndWait, signalProcessGroup } from '../../util/process-tree.js';
import type { ProcessExit, SandboxProcess } from '../types.js';

/** Environment variable every sandbox process carries, so stragglers can be found by /proc scan. */
const PROCESS_MARKER = 'OPENCODE_ENV_PROCESS_ID';

export interface LaunchSpec {
  hostArgv: string[];
  hostCwd: string;
  env: Record<string, string>;
  processId: string;
  /** Host files opened read-only and handed to the process as fds 3, 4, … (bubblewrap reads its seccomp filter from one). */
  inheritFiles?: string[];
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
}

/** How long kill() keeps scanning for processes that left the process group. */
const STRAGGLER_SCAN_MS = 5000;

/** How long to wait for output pipes to drain after the process itself has exited. */
const PIPE_DRAIN_GRACE_MS = 2000;

function normalizeExit(code: number | null, signal: NodeJS.Signals | null): ProcessExit {
  if (signal) return { exitCode: 128 + (os.constants.signals[signal] ?? 0), signal };
  return { exitCode: code ?? 1, signal: null };
}

/**
 * One process tree on the host, started in its own process group. `exited` settles once the
 * process has exited and its pipes are drained (or the drain grace has passed).
 */
export class LocalProcess implements SandboxProcess {
  readonly exited: Promise<ProcessExit>;
  private readonly child: ChildProcess;
  private killing: Promise<void> | null = null;

  constructor(private readonly spec: LaunchSpec) {
    const [command, ...args] = spec.hostArgv;
    // Opened per launch: each reader consumes its own file offset. Our copies are closed once the child has its own.
    const inherited = (spec.inheritFiles ?? []).map((file) => openSync(file, 'r'));
    try {
      this.child = spawn(command!, args, {
        cwd: spec.hostCwd,
        env: { ...spec.env, [PROCESS_MARKER]: spec.processId },
        stdio: ['pipe', 'pipe', 'pipe', ...inherited],
        detached: true,
      });
    } finally {
      for (const fd of inherited) closeSync(fd);
    }
    this.child.stdin!.on('error', () => {
      // The process may exit before reading its input; that is reported through `exited`.
    });
    if (spec.onStdout) this.child.stdout!.on('data', spec.onStdout);
    else this.child.stdout!.resume();
    if (spec.onStderr) this.child.stderr!.on('data', spec.onStderr);
    else this.child.stderr!.resume();

    this.exited = new Promise<ProcessExit>((resolve) => {
      let exit: ProcessExit | null = null;
      let drainTimer: NodeJS.Timeout | undefined;
      const finish = () => {
        clearTimeout(drainTimer);
        resolve(exit ?? { exitCode: 1, signal: null });
      };
      this.child.once('error', (error) => {
        exit = { exitCode: 127, signal: null };
        spec.onStderr?.(Buffer.from(`failed to start ${command}: ${error.message}\n`));
        finish();
      });
      this.child.once('exit', (code, signal) => {
        exit = normalizeExit(code, signal);
        // A background child that inherited our pipes can keep them open forever; don't wait on it.
        drainTimer = setTimeout(() => {
          this.child.stdout?.destroy();
          this.child.stderr?.destroy();
          finish();
        }, PIPE_DRAIN_GRACE_MS);
        drainTimer.unref();
      });
      this.child.once('close', finish);
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  write(data: string | Buffer): Promise<void> {
    const stdin = this.child.stdin;
    // A process that already exited (or closed its input) simply never reads it: that is reported through `exited`.
    if (!stdin?.writable) return Promise.resolve();
    return new Promise((resolve) => {
      // The callback also runs on a failed write (EPIPE); 'close' covers a pipe destroyed before it could.
      stdin.once('close', resolve);
      stdin.write(data, () => {
        stdin.off('close', resolve);
        resolve();
      });
    });
  }

  endInput(): Promise<void> {
    const stdin = this.child.stdin;
    if (!stdin || stdin.writableEnded) return Promise.resolve();
    return new Promise((resolve) => {
      stdin.once('close', resolve);
      stdin.end(() => {
        stdin.off('close', resolve);
        resolve();
      });
    });
  }

  kill(): Promise<void> {
    this.killing ??= (async () => {
      if (this.child.pid !== undefined) signalProcessGroup(this.child.pid, 'SIGKILL');
      // Always, even under bubblewrap's own pid namespace: a kill that lands while bubblewrap starts can miss its init
      // (already in a session of its own, not yet bound to die with its parent), which then lives on with the command
      // under it. Until a scan finds nothing: what a fork bomb forked between one scan and its kill turns up in the next.
      const deadline = Date.now() + STRAGGLER_SCAN_MS;
      for (;;) {
        const found = await findProcessesByEnvMarker(PROCESS_MARKER, this.spec.processId);
        if (found.length === 0 || Date.now() > deadline) break;
        await killAndWait(found);
      }
      await this.exited;
    })();
    return this.killing;
  }
}
