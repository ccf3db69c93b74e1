// Covers SseSplitter and eventData: Server-Sent Events split back into events however the bytes were chunked.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { eventData, SseSplitter } from '../../src/core/proxy/sse.js';

/** Small deterministic PRNG (mulberry32), so "random" chunkings are the same on every run. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Feeds `bytes` to a fresh splitter in the given piece sizes, then flushes; returns every event. */
function split(bytes: Buffer, sizes: Iterable<number>): string[] {
  const splitter = new SseSplitter();
  const events: string[] = [];
  let offset = 0;
  for (const size of sizes) {
    if (offset >= bytes.length) break;
    events.push(...splitter.push(bytes.subarray(offset, offset + size)));
    offset += size;
  }
  if (offset < bytes.length) events.push(...splitter.push(bytes.subarray(offset)));
  events.push(...splitter.flush());
  return events;
}

function* byteByByte(): Generator<number> {
  for (;;) yield 1;
}

function* randomSizes(seed: number, max: number): Generator<number> {
  const next = random(seed);
  for (;;) yield 1 + Math.floor(next() * max);
}

/** The events a stream is made of, each without its terminating blank line. */
const EVENTS = [
  'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}',
  ': keep-alive comment',
  'data: {"choices":[{"delta":{"content":"Hello"}}]}',
  'event: message\ndata: {"choices":[{"delta":{"content":" world"}}]}',
  'data: {"choices":[{"delta":{"content":"!"}}]}',
  'data: [DONE]',
];
const STREAM = Buffer.from(EVENTS.map((event) => `${event}\n\n`).join(''), 'utf8');

describe('SseSplitter', () => {
  it('splits a stream pushed at once into its events', () => {
    assert.deepEqual(split(STREAM, [STREAM.length]), EVENTS);
  });

  it('gives the same events when fed byte by byte', () => {
    assert.deepEqual(split(STREAM, byteByByte()), EVENTS);
  });

  it('gives the same events for random chunk sizes', () => {
    for (let seed = 1; seed <= 50; seed++) {
      assert.deepEqual(split(STREAM, randomSizes(seed, 40)), EVENTS, `seed ${seed}`);
    }
  });

  it('returns an event as soon as its blank line arrives, and nothing before', () => {
    const splitter = new SseSplitter();
    assert.deepEqual(splitter.push('data: 1\n'), []);
    assert.deepEqual(splitter.push('\ndata: 2'), ['data: 1']);
    assert.deepEqual(splitter.push('\n\n'), ['data: 2']);
    assert.deepEqual(splitter.flush(), []);
  });

  it('accepts strings as well as buffers', () => {
    assert.deepEqual(new SseSplitter().push('data: a\n\ndata: b\n\n'), ['data: a', 'data: b']);
  });

  it('treats CRLF line endings like LF, also when a CRLF pair is cut between chunks', () => {
    const crlf = Buffer.from(EVENTS.map((event) => `${event.replace(/\n/g, '\r\n')}\r\n\r\n`).join(''), 'utf8');
    assert.deepEqual(split(crlf, [crlf.length]), EVENTS);
    assert.deepEqual(split(crlf, byteByByte()), EVENTS);
    for (let seed = 1; seed <= 20; seed++) assert.deepEqual(split(crlf, randomSizes(seed, 7)), EVENTS, `seed ${seed}`);
  });

  it('flush hands back a trailing event that has no blank line after it', () => {
    const splitter = new SseSplitter();
    assert.deepEqual(splitter.push('data: a\n\ndata: last'), ['data: a']);
    assert.deepEqual(splitter.flush(), ['data: last']);
    assert.deepEqual(splitter.flush(), [], 'flushing again gives nothing');
  });

  it('flush ignores trailing whitespace only', () => {
    const splitter = new SseSplitter();
    splitter.push('data: a\n\n\n');
    assert.deepEqual(splitter.flush(), []);
  });

  // Upstreams stream UTF-8 text, and TCP may cut a multi-byte character between two chunks.
  it('keeps multi-byte UTF-8 characters intact when a chunk boundary falls inside one', () => {
    const events = ['data: {"content":"héllo wörld ✓ 日本語 🙂"}', 'data: [DONE]'];
    const bytes = Buffer.from(events.map((event) => `${event}\n\n`).join(''), 'utf8');
    assert.deepEqual(split(bytes, byteByByte()), events);
    for (let seed = 1; seed <= 20; seed++) assert.deepEqual(split(bytes, randomSizes(seed, 5)), events, `seed ${seed}`);
  });
});

describe('eventData', () => {
  it('is the payload of a single data line', () => {
    assert.equal(eventData('data: {"a":1}'), '{"a":1}');
  });

  it('accepts `data:` without the space', () => {
    assert.equal(eventData('data:{"a":1}'), '{"a":1}');
  });

  it('joins several data lines with newlines', () => {
    assert.equal(eventData('data: first\ndata: second\ndata:third'), 'first\nsecond\nthird');
  });

  it('skips other fields such as event and id', () => {
    assert.equal(eventData('event: message\nid: 7\ndata: payload'), 'payload');
  });

  it('handles CRLF inside an event', () => {
    assert.equal(eventData('event: x\r\ndata: one\r\ndata: two'), 'one\ntwo');
  });

  it('is null for a comment or an event without data', () => {
    assert.equal(eventData(': keep-alive'), null);
    assert.equal(eventData('event: ping'), null);
    assert.equal(eventData(''), null);
  });

  it('passes [DONE] through as text', () => {
    assert.equal(eventData('data: [DONE]'), '[DONE]');
  });
});
