import { open, type FileHandle } from 'node:fs/promises';

/**
 * Reading a JSON Lines file one line at a time, with each line's byte offset, so that memory stays around
 * the longest line however large the file is. Only complete lines (ending in a newline) count: a crash
 * mid-write leaves a torn last line, which is ignored.
 */

const CHUNK_BYTES = 1024 * 1024;
const NEWLINE = 0x0a;

export interface Line {
  /** Byte offset of the line's first byte. */
  offset: number;
  /** The line without its newline. */
  bytes: Buffer;
}

export async function* readLines(file: string): AsyncGenerator<Line> {
  const handle = await open(file, 'r');
  try {
    let position = 0;
    let lineStart = 0;
    let pending: Buffer[] = [];
    for (;;) {
      const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
      const { bytesRead } = await handle.read(buffer, 0, CHUNK_BYTES, position);
      if (bytesRead === 0) return;
      const chunk = buffer.subarray(0, bytesRead);
      let from = 0;
      for (let at = chunk.indexOf(NEWLINE); at !== -1; at = chunk.indexOf(NEWLINE, from)) {
        pending.push(chunk.subarray(from, at));
        const bytes = pending.length === 1 ? pending[0]! : Buffer.concat(pending);
        pending = [];
        yield { offset: lineStart, bytes };
        lineStart = position + at + 1;
        from = at + 1;
      }
      if (from < bytesRead) pending.push(chunk.subarray(from, bytesRead));
      position += bytesRead;
    }
  } finally {
    await handle.close();
  }
}

export async function readFirstLine(file: string): Promise<Line | null> {
  for await (const line of readLines(file)) return line;
  return null;
}

/** Reads `length` bytes at `position` (fewer at the end of the file). */
export async function readRange(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await handle.read(buffer, filled, length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return buffer.subarray(0, filled);
}

/** Byte offset just past the last newline at or before `end` (0 when there is none). */
async function endOfLastLine(handle: FileHandle, end: number): Promise<number> {
  let position = end;
  while (position > 0) {
    const start = Math.max(0, position - CHUNK_BYTES);
    const chunk = await readRange(handle, start, position - start);
    const at = chunk.lastIndexOf(NEWLINE);
    if (at !== -1) return start + at + 1;
    position = start;
  }
  return 0;
}

/**
 * The last complete line of the file, read backwards, and where complete lines end (a torn tail starts
 * there); null when the file has no complete line.
 */
export async function readLastLine(file: string): Promise<{ line: Line; completeBytes: number } | null> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    const completeBytes = await endOfLastLine(handle, size);
    if (completeBytes === 0) return null;
    const offset = await endOfLastLine(handle, completeBytes - 1);
    return { line: { offset, bytes: await readRange(handle, offset, completeBytes - 1 - offset) }, completeBytes };
  } finally {
    await handle.close();
  }
}
