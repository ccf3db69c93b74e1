import type { Logger } from '../../log.js';
import type { Runtime } from '../../runtime.js';
import { openSession, type Session } from '../../session.js';

/** How a client holds its session: a WebSocket connection, an MCP session id, an OpenEnv JSON-RPC session id. */
export type HttpSessionKind = 'ws' | 'mcp' | 'openenv-rpc' | 'web';

/** Refused: every slot is taken. Transports answer with their own capacity error (`CAPACITY_REACHED`, -32000, 503). */
export class CapacityError extends Error {
  constructor(
    readonly activeSessions: number,
    readonly maxSessions: number,
  ) {
    super(`Server at capacity: ${activeSessions}/${maxSessions} sessions active. Cannot accept new connections.`);
    this.name = 'CapacityError';
  }
}

/** One live session of HTTP mode: the domain session plus what the registry needs to reap it. */
export class HttpSession {
  lastActiveAt = Date.now();
  private inFlight = 0;
  private readonly closeListeners: Array<() => void> = [];

  constructor(
    readonly kind: HttpSessionKind,
    readonly session: Session,
  ) {}

  get id(): string {
    return this.session.id;
  }

  /** Marks a call as running (a running call is never idle); call the returned function when it ends. */
  begin(): () => void {
    this.inFlight += 1;
    this.lastActiveAt = Date.now();
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.inFlight -= 1;
      this.lastActiveAt = Date.now();
    };
  }

  touch(): void {
    this.lastActiveAt = Date.now();
  }

  idleSince(now: number): number {
    return this.inFlight > 0 ? 0 : now - this.lastActiveAt;
  }

  /** Runs when the session ends for any reason (closed by its client, reaped, shutdown): e.g. a socket to close. */
  onClose(listener: () => void): void {
    this.closeListeners.push(listener);
  }

  /** @internal the registry's: tells the transport its session is gone. */
  notifyClosed(): void {
    for (const listener of this.closeListeners.splice(0)) {
      try {
        listener();
      } catch {
        // A listener's failure must not keep the others from running.
      }
    }
  }
}

export interface SessionRegistryOptions {
  maxSessions: number;
  idleMs: number;
  logger: Logger;
}

/**
 * Every live session of the HTTP server, whatever its transport, under one cap (MAX_CONCURRENT_ENVS). A session whose
 * client vanished is closed once idle for `idleMs` (no call in flight), which kills its sandbox: nothing is left running.
 */
export class SessionRegistry {
  private readonly sessions = new Map<string, HttpSession>();
  private readonly reaper: NodeJS.Timeout;

  constructor(
    private readonly runtime: Runtime,
    private readonly options: SessionRegistryOptions,
  ) {
    const every = Math.max(250, Math.min(30_000, Math.floor(options.idleMs / 4)));
    this.reaper = setInterval(() => void this.reapIdle(), every).unref();
  }

  get active(): number {
    return this.sessions.size;
  }

  get max(): number {
    return this.options.maxSessions;
  }

  /** A new session of `kind`, or a CapacityError when every slot is taken. */
  open(kind: HttpSessionKind): HttpSession {
    if (this.sessions.size >= this.options.maxSessions) throw new CapacityError(this.sessions.size, this.options.maxSessions);
    const entry = new HttpSession(kind, openSession(this.runtime));
    this.sessions.set(entry.id, entry);
    this.options.logger.debug({ session: entry.id, kind, active: this.sessions.size }, 'session opened');
    return entry;
  }

  /** The live session with this id, if it is of `kind` (a client never reaches another transport's sessions by id). */
  get(id: string, kind: HttpSessionKind): HttpSession | undefined {
    const entry = this.sessions.get(id);
    return entry?.kind === kind ? entry : undefined;
  }

  /** Ends a session: its rollouts are cancelled (their traces stored), its sandbox killed. Safe to call more than once. */
  async close(id: string, why: string): Promise<void> {
    const entry = this.sessions.get(id);
    if (!entry) return;
    this.sessions.delete(id);
    this.options.logger.debug({ session: id, kind: entry.kind, why, active: this.sessions.size }, 'session closed');
    entry.notifyClosed();
    await entry.session.close();
  }

  async closeAll(why: string): Promise<void> {
    clearInterval(this.reaper);
    await Promise.allSettled([...this.sessions.keys()].map((id) => this.close(id, why)));
  }

  private async reapIdle(): Promise<void> {
    const now = Date.now();
    const idle = [...this.sessions.values()].filter((entry) => entry.idleSince(now) >= this.options.idleMs);
    for (const entry of idle) this.options.logger.info({ session: entry.id, kind: entry.kind }, 'closing an idle session');
    await Promise.allSettled(idle.map((entry) => this.close(entry.id, 'idle')));
  }
}
