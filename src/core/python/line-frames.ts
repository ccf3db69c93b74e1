/** What one `LineFrameReader.push` found. */
export interface LineFrames {
  /** The lines completed by this chunk, in order, without their newline, decoded as UTF-8. */
  frames: string[];
  /** A line grew past the limit: the reader has dropped it and keeps nothing more from this stream. */
  overflow: boolean;
}

/**
 * Splits a byte stream into newline-terminated frames in time and memory linear in the input: received
 * chunks are kept as they are, each byte is scanned for the newline once, and a frame's chunks are joined
 * once, when it completes. Bytes are decoded per frame, so a character split across chunks decodes whole.
 * A line longer than the limit (given with each chunk, as it depends on what the caller expects next)
 * stops the reader, which never holds more than the limit plus one chunk.
 */
export class LineFrameReader {
  private chunks: Buffer[] = [];
  private bufferedBytes = 0;
  private overflowed = false;

  push(chunk: Buffer, maxFrameBytes: number): LineFrames {
    const frames: string[] = [];
    if (this.overflowed) return { frames, overflow: true };
    let start = 0;
    let newline: number;
    while ((newline = chunk.indexOf(0x0a, start)) >= 0) {
      const length = this.bufferedBytes + (newline - start);
      if (length > maxFrameBytes) return this.stop(frames);
      const end = chunk.subarray(start, newline);
      const frame = this.chunks.length === 0 ? end : Buffer.concat([...this.chunks, end], length);
      frames.push(frame.toString('utf8'));
      this.chunks = [];
      this.bufferedBytes = 0;
      start = newline + 1;
    }
    if (start < chunk.length) {
      this.bufferedBytes += chunk.length - start;
      if (this.bufferedBytes > maxFrameBytes) return this.stop(frames);
      this.chunks.push(chunk.subarray(start));
    }
    return { frames, overflow: false };
  }

  private stop(frames: string[]): LineFrames {
    this.overflowed = true;
    this.chunks = [];
    this.bufferedBytes = 0;
    return { frames, overflow: true };
  }
}
