// Covers CappedOutput: a stream's output kept in bounded memory as its head and tail, with the omitted byte count.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CappedOutput } from '../../src/util/capped-output.js';

/** Distinct, readable bytes: "0123456789abcdef..." repeated, so a wrong slice shows. */
function text(length: number): string {
  const alphabet = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
  return Array.from({ length }, (_, i) => alphabet[i % alphabet.length]).join('');
}

function collect(limit: number, chunks: Iterable<Buffer>): CappedOutput {
  const output = new CappedOutput(limit);
  for (const chunk of chunks) output.push(chunk);
  return output;
}

function* pieces(input: string, size: number): Generator<Buffer> {
  const bytes = Buffer.from(input);
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

/** What a capped output of `input` should read: the first ceil(limit/2) bytes, a marker, the last floor(limit/2). */
function expectedCapped(input: string, limit: number): string {
  const head = Math.ceil(limit / 2);
  const tail = limit - head;
  const omitted = input.length - limit;
  return `${input.slice(0, head)}\n[... ${omitted} bytes of output omitted ...]\n${input.slice(input.length - tail)}`;
}

describe('CappedOutput', () => {
  it('is empty and not truncated before anything arrives', () => {
    const output = new CappedOutput(10);
    assert.equal(output.toString(), '');
    assert.equal(output.truncated, false);
  });

  it('keeps output under the limit exactly', () => {
    const input = text(70);
    const output = collect(100, pieces(input, 9));
    assert.equal(output.toString(), input);
    assert.equal(output.truncated, false);
  });

  it('keeps output of exactly the limit exactly', () => {
    const input = text(100);
    const output = collect(100, [Buffer.from(input)]);
    assert.equal(output.toString(), input);
    assert.equal(output.truncated, false);
  });

  it('over the limit keeps the first and last half of it, and counts what fell between', () => {
    const limit = 100;
    const input = text(1000);
    const output = collect(limit, [Buffer.from(input)]);
    assert.equal(output.truncated, true);
    assert.equal(output.toString(), expectedCapped(input, limit));
    assert.match(output.toString(), /\[\.\.\. 900 bytes of output omitted \.\.\.\]/);
  });

  it('one byte over the limit omits one byte', () => {
    const input = text(11);
    assert.equal(
      collect(10, [Buffer.from(input)]).toString(),
      `${input.slice(0, 5)}\n[... 1 bytes of output omitted ...]\n${input.slice(6)}`,
    );
  });

  it('with an odd limit the head gets the extra byte', () => {
    const input = text(50);
    assert.equal(collect(11, [Buffer.from(input)]).toString(), expectedCapped(input, 11));
    assert.ok(
      collect(11, [Buffer.from(input)])
        .toString()
        .startsWith(input.slice(0, 6) + '\n'),
    );
  });

  it('gives the same result whatever the chunk sizes', () => {
    const limit = 64;
    const input = text(1234);
    const expected = expectedCapped(input, limit);
    for (const size of [1, 2, 3, 7, 31, 32, 33, 64, 65, 500, 1234]) {
      assert.equal(collect(limit, pieces(input, size)).toString(), expected, `chunks of ${size}`);
    }
  });

  it('ignores empty chunks', () => {
    const output = collect(10, [Buffer.alloc(0), Buffer.from('abc'), Buffer.alloc(0)]);
    assert.equal(output.toString(), 'abc');
  });
});
