/**
 * Incremental Server-Sent Events splitter: feed it bytes as they arrive and it hands back each
 * complete event (the text between blank lines), however the bytes were cut into chunks.
 */
export class SseSplitter {
  private pending = '';

  /** Complete events in `chunk` (plus what was pending); a partial event waits for the next chunk. */
  push(chunk: Buffer | string): string[] {
    this.pending += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    const events: string[] = [];
    let boundary: RegExpExecArray | null;
    const separator = /\r?\n\r?\n/g;
    let consumed = 0;
    while ((boundary = separator.exec(this.pending)) !== null) {
      events.push(this.pending.slice(consumed, boundary.index));
      consumed = boundary.index + boundary[0].length;
    }
    this.pending = this.pending.slice(consumed);
    return events;
  }

  /** Whatever is left when the stream ends without a final blank line. */
  flush(): string[] {
    const rest = this.pending;
    this.pending = '';
    return rest.trim() ? [rest] : [];
  }
}

/** The payload of an event's `data:` lines (joined), or null for comments and other fields only. */
export function eventData(event: string): string | null {
  const lines = event.split(/\r?\n/).filter((line) => line.startsWith('data:'));
  if (lines.length === 0) return null;
  return lines.map((line) => line.slice(line.startsWith('data: ') ? 6 : 5)).join('\n');
}
