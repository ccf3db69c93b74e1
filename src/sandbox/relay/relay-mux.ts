import { Duplex } from 'node:stream';

/**
 * The server's end of an LLM channel carried over a sandbox command's stdin and stdout
 * (resources/sandbox/llm-relay.mjs has the wire format). Each connection the relay reports becomes a Duplex
 * handed to `accept`, as if it had arrived on a socket; what the server writes to it goes back as frames.
 *
 * Frames to the sandbox are batched: each stdin write of a remote backend is a round trip (and counts against
 * E2B's per-IP operation limit), and a streamed answer arrives as many small chunks. A frame goes out at once when
 * the last write began at least `batchMs` ago and has returned (so the first token is not delayed); otherwise it
 * waits for both, together with whatever else arrives meanwhile. Tokens wait a few milliseconds (or one round trip)
 * at most, never for the turn to end.
 */
export interface RelayMuxOptions {
  /** Sends frames to the relay's stdin; resolves once they are handed over. */
  write: (text: string) => Promise<void>;
  accept: (connection: Duplex) => void;
  /** Least time between the starts of two writes to the sandbox. */
  batchMs?: number;
  /** The relay's own command's stdout, when it runs one. */
  onCommandStdout?: (chunk: Buffer) => void;
  /** Largest frame line accepted from the sandbox; a longer one is a protocol violation. */
  maxFrameBytes?: number;
}

const DEFAULT_BATCH_MS = 3;
const DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024;

class RelayConnection extends Duplex {
  constructor(
    private readonly id: number,
    private readonly mux: RelayMux,
  ) {
    super({ allowHalfOpen: true });
  }

  override _read(): void {
    // Data is pushed as frames arrive; the relay is not flow-controlled (the server reads as fast as it can).
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.mux.send(`D ${this.id} ${chunk.toString('base64')}`);
    callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.mux.send(`E ${this.id}`);
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.mux.forget(this.id, true);
    callback(error);
  }
}

export class RelayMux {
  private readonly connections = new Map<number, RelayConnection>();
  private readonly chunks: Buffer[] = [];
  private bufferedBytes = 0;
  private outgoing: string[] = [];
  private flushTimer: NodeJS.Timeout | null = null;
  private writing = false;
  private lastWriteAt = -Infinity;
  private portResolve: ((port: number) => void) | null = null;
  /** The loopback port the relay listens on inside the sandbox, once it said so. */
  readonly port: Promise<number>;
  /** Set when the relay broke the protocol; nothing more is read from it. */
  problem: string | null = null;

  constructor(private readonly options: RelayMuxOptions) {
    this.port = new Promise((resolve) => (this.portResolve = resolve));
  }

  /** Feeds the relay's stdout. Each byte is scanned once for the end of its line. */
  push(chunk: Buffer): void {
    if (this.problem) return;
    let start = 0;
    let newline = chunk.indexOf(10);
    while (newline !== -1) {
      this.chunks.push(chunk.subarray(start, newline));
      const line = Buffer.concat(this.chunks).toString('latin1');
      this.chunks.length = 0;
      this.bufferedBytes = 0;
      this.onFrame(line);
      start = newline + 1;
      newline = chunk.indexOf(10, start);
    }
    if (start < chunk.length) {
      this.chunks.push(chunk.subarray(start));
      this.bufferedBytes += chunk.length - start;
      if (this.bufferedBytes > (this.options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES)) this.fail('a frame over the size limit');
    }
  }

  private onFrame(line: string): void {
    const [kind, idText, payload] = line.split(' ');
    const id = Number(idText);
    if (!Number.isInteger(id) || id < 0) return this.fail(`a malformed frame: ${JSON.stringify(line.slice(0, 80))}`);
    switch (kind) {
      case 'P':
        this.portResolve?.(Number(payload));
        return;
      case 'S':
        if (payload) this.options.onCommandStdout?.(Buffer.from(payload, 'base64'));
        return;
      case 'O': {
        if (this.connections.has(id)) return this.fail(`connection ${id} opened twice`);
        const connection = new RelayConnection(id, this);
        this.connections.set(id, connection);
        this.options.accept(connection);
        return;
      }
      case 'D':
        if (payload) this.connections.get(id)?.push(Buffer.from(payload, 'base64'));
        return;
      case 'E':
        this.connections.get(id)?.push(null);
        return;
      case 'X': {
        const connection = this.connections.get(id);
        this.forget(id, false);
        connection?.destroy();
        return;
      }
      default:
        return this.fail(`an unknown frame kind: ${JSON.stringify(line.slice(0, 80))}`);
    }
  }

  /** Queues a frame for the sandbox (see the batching rule above). */
  send(frame: string): void {
    this.outgoing.push(frame);
    this.scheduleFlush();
  }

  /** A flush when the current write has returned and `batchMs` have passed since it began; frames queued in the same tick go together. */
  private scheduleFlush(): void {
    if (this.writing || this.flushTimer || this.outgoing.length === 0) return;
    const wait = Math.max(0, this.lastWriteAt + (this.options.batchMs ?? DEFAULT_BATCH_MS) - performance.now());
    this.flushTimer = setTimeout(() => {
      this.flushTimer = null;
      this.flush();
    }, wait);
  }

  private flush(): void {
    if (this.writing || this.outgoing.length === 0) return;
    const text = `${this.outgoing.join('\n')}\n`;
    this.outgoing = [];
    // One write at a time, in order: a remote stdin is a sequence of requests.
    this.writing = true;
    this.lastWriteAt = performance.now();
    void this.options
      .write(text)
      .catch(() => undefined)
      .finally(() => {
        this.writing = false;
        if (this.outgoing.length > 0) this.scheduleFlush();
      });
  }

  /** Drops a connection; `tellRelay` when the server side ended it, so the relay closes its socket too. */
  forget(id: number, tellRelay: boolean): void {
    if (!this.connections.delete(id)) return;
    if (tellRelay) this.send(`X ${id}`);
  }

  private fail(problem: string): void {
    this.problem = problem;
    this.chunks.length = 0;
    this.close();
  }

  /** Destroys every connection; frames still queued are sent first. */
  close(): void {
    for (const connection of [...this.connections.values()]) connection.destroy();
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    this.flush();
  }
}
