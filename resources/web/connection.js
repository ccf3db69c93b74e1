/* global WebSocket, location */
// The page's link to the server: the token from the page's own URL, the trace API, and the socket at /web/socket
// (frames as in src/transports/http/web-protocol.ts). One socket is one session (one episode) on the server.

const token = new URLSearchParams(location.search).get('token');

/** A same-origin URL with the token, for fetches and download links (the browser cannot set headers on those). */
export function withToken(path) {
  const url = new URL(path, location.origin);
  if (token) url.searchParams.set('token', token);
  return url.pathname + url.search;
}

export async function getJson(path) {
  const response = await fetch(withToken(path), { headers: { accept: 'application/json' } });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(body?.detail ?? `${response.status} ${response.statusText}`);
  return body;
}

/** A tool call that failed: the server's classified error (class, kind, message). */
export class ToolError extends Error {
  constructor(error) {
    super(error.message);
    this.class = error.class;
    this.kind = error.kind;
  }
}

/**
 * The session socket, opened on first use and again after it closed (a new session: a fresh episode).
 * `onStatus({ state, message, sessionId })` hears about every change: connecting, ready, closed, refused.
 */
export class Connection {
  constructor(onStatus) {
    this.onStatus = onStatus;
    this.socket = null;
    this.ready = null;
    this.pending = new Map();
    this.nextId = 1;
    this.sessionId = null;
  }

  connect() {
    if (this.ready) return this.ready;
    const url = new URL(withToken('/web/socket'), location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    this.onStatus({ state: 'connecting', message: 'connecting…' });
    const socket = new WebSocket(url);
    this.socket = socket;
    let refusal = null;
    this.ready = new Promise((resolve, reject) => {
      socket.addEventListener('message', (event) => {
        let frame;
        try {
          frame = JSON.parse(event.data);
        } catch {
          return;
        }
        if (frame.type === 'ready') {
          this.sessionId = frame.session_id;
          this.onStatus({ state: 'ready', message: 'connected', sessionId: frame.session_id });
          resolve();
        } else if (frame.type === 'error' && frame.code === 'capacity') {
          refusal = `The server is busy: ${frame.message} Close another tab or try again in a while.`;
        } else if (frame.type === 'error' && frame.code === 'session_closed') {
          refusal = `Session ended: ${frame.message}. The next run starts a new one.`;
        } else if (frame.type === 'progress') {
          this.pending.get(frame.id)?.onProgress?.(frame.message);
        } else if (frame.type === 'result') {
          const call = this.pending.get(frame.id);
          this.pending.delete(frame.id);
          if (!call) return;
          if (frame.ok) call.resolve(frame.value);
          else call.reject(new ToolError(frame.error));
        }
      });
      socket.addEventListener('close', (event) => {
        const wasReady = this.sessionId !== null;
        const message =
          refusal ??
          (wasReady
            ? 'Disconnected. The next run opens a new session (a fresh interpreter).'
            : event.code === 1006
              ? 'Could not connect. If the server has a token, open this page with ?token=<OPENCODE_ENV_TOKEN>.'
              : `Connection closed (${event.code}${event.reason ? `: ${event.reason}` : ''}).`);
        this.socket = null;
        this.ready = null;
        this.sessionId = null;
        for (const call of this.pending.values()) call.reject(new Error(message));
        this.pending.clear();
        this.onStatus({ state: wasReady ? 'closed' : 'refused', message });
        reject(new Error(message));
      });
    });
    this.ready.catch(() => {});
    return this.ready;
  }

  /** Calls a tool in this tab's session; progress messages go to `onProgress` as they come. Returns [promise, cancel]. */
  call(tool, args, onProgress) {
    const id = this.nextId++;
    const promise = this.connect().then(
      () =>
        new Promise((resolve, reject) => {
          this.pending.set(id, { resolve, reject, onProgress });
          this.socket.send(JSON.stringify({ type: 'call', id, tool, arguments: args }));
        }),
    );
    const cancel = () => this.socket?.send(JSON.stringify({ type: 'cancel', id }));
    return [promise, cancel];
  }
}
