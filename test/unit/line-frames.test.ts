import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LineFrameReader } from '../../src/core/python/line-frames.js';

const LIMIT = 1024;

/** Feeds `chunks` in order and collects every frame, stopping at the first overflow. */
function feed(chunks: Buffer[], limit = LIMIT): { frames: string[]; overflow: boolean } {
  const reader = new LineFrameReader();
  const frames: string[] = [];
  for (const chunk of chunks) {
    const result = reader.push(chunk, limit);
    frames.push(...result.frames);
    if (result.overflow) return { frames, overflow: true };
  }
  return { frames, overflow: false };
}

describe('LineFrameReader', () => {
  it('returns every complete line of a chunk, in order, and keeps the unfinished one', () => {
    const reader = new LineFrameReader();
    assert.deepEqual(reader.push(Buffer.from('{"a":1}\n{"b":2}\n{"c"'), LIMIT), { frames: ['{"a":1}', '{"b":2}'], overflow: false });
    assert.deepEqual(reader.push(Buffer.from(':3}\n'), LIMIT), { frames: ['{"c":3}'], overflow: false });
    assert.deepEqual(reader.push(Buffer.from('\n'), LIMIT), { frames: [''], overflow: false }, 'an empty line is a frame');
  });

  it('joins a frame split across many chunks', () => {
    const text = 'x'.repeat(500);
    const chunks = [...text].map((c) => Buffer.from(c));
    assert.deepEqual(feed([...chunks, Buffer.from('\n')]).frames, [text]);
  });

  it('decodes a UTF-8 character split across chunks whole', () => {
    const bytes = Buffer.from('é€😀\n', 'utf8');
    // Every byte in its own chunk: each multi-byte character is split.
    assert.deepEqual(feed([...bytes].map((b) => Buffer.from([b]))).frames, ['é€😀']);
  });

  it('accepts a frame of exactly the limit and stops at one byte more, whether or not its newline has arrived', () => {
    assert.deepEqual(feed([Buffer.from(`${'a'.repeat(LIMIT)}\n`)]), { frames: ['a'.repeat(LIMIT)], overflow: false });
    assert.deepEqual(feed([Buffer.from(`${'a'.repeat(LIMIT + 1)}\n`)]), { frames: [], overflow: true });
    assert.deepEqual(feed([Buffer.from('a'.repeat(LIMIT)), Buffer.from('a')]), { frames: [], overflow: true });
  });

  it('returns the frames completed before an overflow, then nothing more', () => {
    const reader = new LineFrameReader();
    const first = reader.push(Buffer.from(`ok\n${'z'.repeat(LIMIT + 1)}`), LIMIT);
    assert.deepEqual(first, { frames: ['ok'], overflow: true });
    assert.deepEqual(reader.push(Buffer.from('later\n'), LIMIT), { frames: [], overflow: true }, 'the stream is abandoned');
  });

  it('applies the limit given with each chunk', () => {
    const reader = new LineFrameReader();
    assert.equal(reader.push(Buffer.from('a'.repeat(100)), 200).overflow, false);
    assert.equal(reader.push(Buffer.from('a'), 100).overflow, true, 'the buffered line counts against the new, smaller limit');
  });

  it('is linear: 64 MiB without a newline in 1 KiB chunks, and one 8 MiB frame in 1 KiB chunks, take well under a second', () => {
    const chunk = Buffer.alloc(1024, 'x');
    const started = performance.now();
    const reader = new LineFrameReader();
    let overflowAt = -1;
    for (let i = 0; i < 64 * 1024; i++) {
      if (reader.push(chunk, 1 << 20).overflow) {
        overflowAt = i;
        break;
      }
    }
    assert.equal(overflowAt, 1024, 'stops as soon as the line passes the limit');

    const big = new LineFrameReader();
    const frames: string[] = [];
    for (let i = 0; i < 8 * 1024; i++) frames.push(...big.push(chunk, 16 << 20).frames);
    frames.push(...big.push(Buffer.from('\n'), 16 << 20).frames);
    const elapsedMs = performance.now() - started;
    assert.equal(frames.length, 1);
    assert.equal(frames[0]!.length, 8 << 20);
    assert.ok(elapsedMs < 1000, `took ${elapsedMs.toFixed(0)} ms`);
  });
});
