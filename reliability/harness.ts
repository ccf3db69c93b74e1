import { startScripted, type ScriptedLlm } from '../test/helpers/scripted.js';
import { finishHttpServer, HttpServer, type HttpServerOptions } from './http-server.js';
import { reapLeftovers, reapSurvivors } from './leftovers.js';
import { keyScan } from './secrets.js';
import { resultText, Server, Workspace, type ServerOptions } from './server.js';
import { startRecorder, type Recorder } from './upstreams.js';

/** One attack or bad day: what is sent, and a check of what comes back. A new case is one of these. */
export interface Case {
  /** Short id shown in the table, e.g. "3b". */
  id: string;
  title: string;
  /** What the case sends, in a few words, for the table. */
  sent: string;
  /** Runs with no other case at the same time (CPU or memory hogs, whole-machine effects). */
  alone?: boolean;
  /** Needs root (mounts, cgroups): reported SKIP otherwise. */
  needsRoot?: boolean;
  /** Runs the case; returns what came back, for the table. Failed expectations make it FAIL. */
  run(t: CaseContext): Promise<string>;
}

export interface CaseContext {
  /** A fresh server (or, with `workspace`, one on an earlier server's directories); checked and stopped after the case. */
  server(options?: ServerOptions): Promise<Server>;
  /** A fresh `opencode-env http --port 0` (or, with `workspace`, one on an earlier server's directories); checked and stopped after the case. */
  httpServer(options?: HttpServerOptions): Promise<HttpServer>;
  /** Directories for a server yet to start (to prepare them first); checked and removed after the case. */
  workspace(): Workspace;
  /** The project's scripted model with this script; closed after the case. */
  scripted(script: unknown, options?: { apiKey?: string }): Promise<ScriptedLlm>;
  /** A recording upstream (relaying to `forwardTo` when given); closed after the case. */
  recorder(forwardTo?: string): Promise<Recorder>;
  /** Records a failure unless `ok`; the case goes on, so every check is reported. */
  expect(ok: unknown, failure: string): void;
  /** Marks a server the case stopped or killed on purpose: it is not asked to answer afterwards. */
  ended(server: Server | HttpServer): void;
  /** Runs after the servers are gone (unmount, remove a cgroup). */
  defer(cleanup: () => Promise<void> | void): void;
}

type Status = 'PASS' | 'FAIL' | 'SKIP';

export interface Outcome {
  testCase: Case;
  status: Status;
  cameBack: string;
  failures: string[];
  seconds: number;
}

const CASE_TIMEOUT_MS = 240_000;
/** How long a server may take to exit once its client went away (the shutdown grace is 10 s by default). */
const EXIT_WAIT_MS = 20_000;

const isRoot = process.getuid?.() === 0;

class Run implements CaseContext {
  readonly failures: string[] = [];
  private readonly servers: Server[] = [];
  private readonly httpServers: HttpServer[] = [];
  private readonly endedServers = new Set<Server | HttpServer>();
  private readonly workspaces = new Set<Workspace>();
  private readonly cleanups: Array<() => Promise<void> | void> = [];

  constructor(private readonly testCase: Case) {}

  workspace(): Workspace {
    const workspace = new Workspace(this.testCase.id);
    this.workspaces.add(workspace);
    return workspace;
  }

  async server(options: ServerOptions = {}): Promise<Server> {
    const label = `${this.testCase.id}-${this.servers.length + 1}`;
    const workspace = options.workspace ?? this.workspace();
    this.workspaces.add(workspace);
    const server = await Server.start(label, { ...options, workspace });
    this.servers.push(server);
    return server;
  }

  async httpServer(options: HttpServerOptions = {}): Promise<HttpServer> {
    const label = `${this.testCase.id}-http-${this.httpServers.length + 1}`;
    const workspace = options.workspace ?? this.workspace();
    this.workspaces.add(workspace);
    const server = await HttpServer.start(label, workspace, options);
    this.httpServers.push(server);
    return server;
  }

  async scripted(script: unknown, options: { apiKey?: string } = {}): Promise<ScriptedLlm> {
    const llm = await startScripted(script, options);
    this.defer(async () => {
      await llm.close();
      for (const request of llm.requests)
        keyScan.scan(`${this.testCase.id}: scripted model request ${request.path}`, JSON.stringify(request.body));
    });
    return llm;
  }

  async recorder(forwardTo?: string): Promise<Recorder> {
    const recorder = await startRecorder(forwardTo);
    this.defer(async () => {
      await recorder.close();
      for (const request of recorder.requests)
        keyScan.scan(`${this.testCase.id}: recorder request ${request.target.slice(0, 60)}`, request.body);
    });
    return recorder;
  }

  expect(ok: unknown, failure: string): void {
    if (!ok) this.failures.push(failure);
  }

  ended(server: Server | HttpServer): void {
    this.endedServers.add(server);
  }

  defer(cleanup: () => Promise<void> | void): void {
    this.cleanups.push(cleanup);
  }

  /** After every case: each server still answers, exits when its client goes away, and leaves nothing behind. */
  async finish(): Promise<void> {
    for (const server of this.servers) {
      if (!server.alive) {
        if (!this.endedServers.has(server)) this.failures.push(`server ${server.label} died (stderr: ${tail(server.stderr())})`);
      } else if (!this.endedServers.has(server)) {
        await this.checkAnswers(server);
      }
      if (server.alive) {
        await server.disconnect();
        if (!(await server.waitExit(EXIT_WAIT_MS))) {
          this.failures.push(`server ${server.label} still running ${EXIT_WAIT_MS / 1000} s after its client went away`);
          server.child.kill('SIGKILL');
          await server.exited;
        }
      }
      const survivors = await reapSurvivors(server.treeAtStop, 5000);
      if (survivors.length > 0) {
        this.failures.push(
          `outlived server ${server.label}: ${survivors
            .map((p) => `${p.pid} ${p.command}`)
            .join('; ')
            .slice(0, 300)}`,
        );
      }
      keyScan.scan(`${server.label}: stderr`, server.stderr());
    }
    for (const server of this.httpServers) this.failures.push(...(await finishHttpServer(server, this.endedServers.has(server))));
    for (const workspace of this.workspaces) {
      const leftovers = await reapLeftovers(workspace.sandboxIds, 5000);
      if (leftovers.length > 0) {
        this.failures.push(
          `left running after the server exited: ${leftovers
            .map((p) => `${p.pid} ${p.command} (${p.marker})`)
            .join('; ')
            .slice(0, 500)}`,
        );
      }
      const dirs = workspace.sandboxDirs();
      if (dirs.length > 0) this.failures.push(`sandbox directories left under the sandbox root: ${dirs.join(', ')}`);
      await keyScan.scanTree(workspace.dataDir, `${this.testCase.id} data dir`);
    }
    // Cleanups (unmounts among them) before the directories go.
    for (const cleanup of this.cleanups.reverse()) {
      try {
        await cleanup();
      } catch (error) {
        this.failures.push(`cleanup failed: ${(error as Error).message}`);
      }
    }
    for (const workspace of this.workspaces) workspace.remove();
  }

  private async checkAnswers(server: Server): Promise<void> {
    try {
      const result = await server.call('execute_python', { code: '6 * 7' }, { timeoutMs: 30_000 });
      const stdout = (result.structuredContent as { stdout?: string } | undefined)?.stdout ?? '';
      if (result.isError || stdout.trim() !== '42') {
        this.failures.push(`next call (execute_python 6 * 7) did not answer 42: ${resultText(result).slice(0, 200)}`);
      }
    } catch (error) {
      this.failures.push(`next call (execute_python 6 * 7) failed: ${(error as Error).message}`);
    }
  }
}

function tail(text: string): string {
  return text.trim().split('\n').slice(-3).join(' | ').slice(-400);
}

async function runOne(testCase: Case): Promise<Outcome> {
  const started = performance.now();
  if (testCase.needsRoot && !isRoot) {
    return { testCase, status: 'SKIP', cameBack: 'not run: needs root (mounts or cgroups)', failures: [], seconds: 0 };
  }
  const run = new Run(testCase);
  let cameBack = '';
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`case did not finish within ${CASE_TIMEOUT_MS / 1000} s`)), CASE_TIMEOUT_MS);
    });
    cameBack = await Promise.race([testCase.run(run), timeout]);
  } catch (error) {
    run.failures.push(`threw: ${(error as Error).message}`);
    cameBack ||= `error: ${(error as Error).message}`;
  } finally {
    clearTimeout(timer);
  }
  await run.finish();
  const seconds = (performance.now() - started) / 1000;
  return { testCase, status: run.failures.length > 0 ? 'FAIL' : 'PASS', cameBack, failures: run.failures, seconds };
}

/**
 * Runs the cases: those that can share the machine `parallel` at a time, then the `alone` ones one by
 * one. `onDone` hears of each outcome as it is known.
 */
export async function runCases(cases: Case[], parallel: number, onDone: (outcome: Outcome) => void): Promise<Outcome[]> {
  const outcomes = new Map<Case, Outcome>();
  const record = (outcome: Outcome) => {
    outcomes.set(outcome.testCase, outcome);
    onDone(outcome);
  };
  const shared = cases.filter((c) => !c.alone);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, shared.length) }, async () => {
      while (next < shared.length) record(await runOne(shared[next++]!));
    }),
  );
  for (const testCase of cases.filter((c) => c.alone)) record(await runOne(testCase));
  return cases.map((c) => outcomes.get(c)!);
}
