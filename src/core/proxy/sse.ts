import { StringDecoder } from 'node:string_decoder';

/**
 * Incremental Server-Sent Events splitter: feed it bytes as they arrive and it hands back each
 * complete event (the text between blank lines), however the bytes were cut into chunks.
 */
export class SseSplitter {
  private pending = '';
  /** Keeps a multi-byte character whole when a chunk boundary falls inside it. */
  private readonly decoder = new StringDecoder('utf8');

  /** Complete events in `chunk` (plus what was pending); a partial event waits for the next chunk. */
  push(chunk: Buffer | string): string[] {
    this.pending += typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    if (this.pending.includes('\r')) this.pending = this.pending.replace(/\r\n/g, '\n');
    const events: string[] = [];
    let consumed = 0;
    let boundary: number;
    while ((boundary = this.pending.indexOf('\n\n', consumed)) >= 0) {
      events.push(this.pending.slice(consumed, boundary));
      consumed = boundary + 2;
    }
    this.pending = consumed === 0 ? this.pending : this.pending.slice(consumed);
    return events;
  }

  /** Whatever is left when the stream ends without a final blank line. */
  flush(): string[] {
    const events = this.push(this.decoder.end());
    const rest = this.pending;
    this.pending = '';
    return rest.trim() ? [...events, rest] : events;
  }
}

/** The payload of an event's `data:` lines (joined), or null for comments and other fields only. */
export function eventData(event: string): string | null {
  // The common case, one `data: ` line, without splitting (this runs once per streamed token).
  if (event.startsWith('data: ') && !event.includes('\n')) return event.slice(6);
  const lines = event.split(/\r?\n/).filter((line) => line.startsWith('data:'));
  if (lines.length === 0) return null;
  return lines.map((line) => line.slice(line.startsWith('data: ') ? 6 : 5)).join('\n');
}
