// The relay-first stream path without whole-chunk parses (scanStreamChunk, recordedPayload, relayStream) against the
// path it replaced (JSON.parse of every chunk, stripInjected, JSON.stringify): the recorded turn must be identical value
// for value, and the agent's bytes identical on JSON.stringify-form input, over varied, oddly spaced and broken streams.
import assert from 'node:assert/strict';
import type http from 'node:http';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { stripInjected, type Injection } from '../../src/core/proxy/injection.js';
import { recordedPayload, scanStreamChunk } from '../../src/core/proxy/json-text.js';
import { eventData, SseSplitter } from '../../src/core/proxy/sse.js';
import { relayStream, type ParsedData } from '../../src/core/proxy/stream-relay.js';
import { TurnAssembler } from '../../src/core/proxy/turn-assembler.js';
import type { AssembledCompletion } from '../../src/core/proxy/types.js';
import { random } from '../helpers/random.js';

type Rng = () => number;
const pick = <T>(rng: Rng, items: readonly T[]): T => items[Math.floor(rng() * items.length)]!;

const TOKENS = [
  'word',
  ' ',
  '"',
  '\\',
  '\n',
  '\t',
  '\u0000',
  '\u001f',
  'é',
  '🙂',
  '\ud800',
  '}]',
  '{"',
  'token_id:42',
  'token_id:0',
  'token_id:',
  '',
  '\u2028',
  '/',
];
const LOGPROBS = [-0.5, 0, -0, -1e-7, -9999, -123.456789012345, 1.5e-300, -3.4028234663852886e38];

function bytesOf(token: string): number[] {
  return [...Buffer.from(token, 'utf8')];
}

/** A logprobs entry, sometimes with fields missing, null or of an odd type. */
function entry(rng: Rng, top: number): Record<string, unknown> {
  const token = pick(rng, TOKENS);
  const e: Record<string, unknown> = {};
  const r = rng();
  if (r < 0.85) e.token = token;
  else if (r < 0.93) e.token = null;
  e.logprob = rng() < 0.85 ? pick(rng, LOGPROBS) : pick(rng, [null, 'x', true, { a: 1 }, [1]]);
  if (rng() < 0.8) e.bytes = rng() < 0.9 ? bytesOf(token) : null;
  const t = rng();
  if (t < 0.7) {
    e.top_logprobs = Array.from({ length: top }, () => {
      const alt: Record<string, unknown> = { token: pick(rng, TOKENS), logprob: pick(rng, LOGPROBS), bytes: bytesOf('ab') };
      if (rng() < 0.05) delete alt.token;
      if (rng() < 0.05) alt.logprob = null;
      return alt;
    });
  } else if (t < 0.8) e.top_logprobs = [];
  else if (t < 0.9) e.top_logprobs = null;
  if (rng() < 0.05) e.extra = { nested: ['x', 1, null] };
  return e;
}

function logprobs(rng: Rng): unknown {
  const r = rng();
  if (r < 0.7) return { content: Array.from({ length: 1 + Math.floor(rng() * 2) }, () => entry(rng, Math.floor(rng() * 4))) };
  if (r < 0.8) return null;
  if (r < 0.85) return { content: null };
  if (r < 0.9) return {};
  if (r < 0.93) return { content: [] };
  if (r < 0.96) return pick(rng, [1, 'text', true, []]);
  return { content: pick(rng, ['ab', 3, { x: 1 }, [null], [5]]) }; // shapes TurnAssembler treats oddly: left to JSON.parse
}

function delta(rng: Rng): Record<string, unknown> {
  const r = rng();
  if (r < 0.4) return { content: pick(rng, TOKENS) };
  if (r < 0.55) return { reasoning_content: pick(rng, TOKENS) };
  if (r < 0.6) return { reasoning: pick(rng, TOKENS) };
  if (r < 0.8)
    return {
      tool_calls: [
        rng() < 0.5
          ? {
              index: Math.floor(rng() * 2),
              id: `call_${Math.floor(rng() * 9)}`,
              type: 'function',
              function: { name: 'write', arguments: '' },
            }
          : { index: Math.floor(rng() * 2), function: { arguments: pick(rng, ['{"a":', '"\\"}"', '}', '🙂']) } },
      ],
    };
  if (r < 0.9) return { role: 'assistant', content: '' };
  return {};
}

function choice(rng: Rng, index: number): unknown {
  if (rng() < 0.03) return pick(rng, [3, 'x', []]); // not an object
  const c: Record<string, unknown> = { index, delta: delta(rng) };
  if (rng() < 0.9) c.logprobs = logprobs(rng);
  const ids = rng();
  if (ids < 0.7) c.token_ids = Array.from({ length: Math.floor(rng() * 3) }, () => Math.floor(rng() * 151_000));
  else if (ids < 0.8) c.token_ids = null;
  else if (ids < 0.83) c.token_ids = pick(rng, ['x', [1, 'x'], [1.5, -0, 1e3]]);
  c.finish_reason = rng() < 0.9 ? null : pick(rng, ['stop', 'tool_calls', 'length']);
  // The order of members varies: token data first, last, or in between.
  const keys = Object.keys(c);
  const shuffled: Record<string, unknown> = {};
  for (const key of keys.sort(() => rng() - 0.5)) shuffled[key] = c[key];
  return shuffled;
}

function chunk(rng: Rng, first: boolean): unknown {
  const r = rng();
  if (r < 0.04)
    return { id: 'c', object: 'chat.completion.chunk', choices: [], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } };
  if (r < 0.06) return pick(rng, [null, 3, 'text', [1, { logprobs: 1 }], {}]);
  const payload: Record<string, unknown> = { id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'm' };
  const n = rng() < 0.1 ? 2 + Math.floor(rng() * 2) : 1;
  payload.choices = Array.from({ length: n }, (_, i) => choice(rng, i));
  if (first || rng() < 0.05) payload.prompt_token_ids = Array.from({ length: 20 }, (_, i) => i * 7);
  if (rng() < 0.05) payload.usage = { total_tokens: 9 };
  if (rng() < 0.03) payload.choices = { logprobs: 'not an array' };
  return payload;
}

/** JSON text with whitespace put in between tokens (outside strings), as another server might format it. */
function oddlySpaced(rng: Rng, text: string): string {
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    out += c;
    if (inString) {
      if (c === '\\') out += text[++i];
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if ('{[,:'.includes(c) && rng() < 0.5) out += pick(rng, [' ', '\n  ', '\t', ' \r\n ']);
  }
  return rng() < 0.3 ? ` ${out} ` : out;
}

/** Strings written with escapes JSON.stringify would not use (\u00e9, \/), which JSON.parse reads the same. */
function escapedDifferently(text: string): string {
  return text
    .replace(/é/g, '\\u00e9')
    .replace(/\//g, '\\/')
    .replace(/"token"/g, '"tok\\u0065n"');
}

/** A broken copy: cut short, a character replaced, or one dropped. */
function broken(rng: Rng, text: string): string {
  const at = Math.floor(rng() * text.length);
  const r = rng();
  if (r < 0.3) return text.slice(0, at);
  if (r < 0.7) return text.slice(0, at) + pick(rng, ['x', '"', '}', ']', ',', '\\', '-', '0', ' ', '\u0001']) + text.slice(at + 1);
  return text.slice(0, at) + text.slice(at + 1);
}

/** What the old path recorded for one data event. */
function oldParse(data: string): ParsedData {
  try {
    return { ok: true, payload: JSON.parse(data) };
  } catch (error) {
    return { ok: false, error: error as Error };
  }
}

/** What the new path records for one data event (as stream-relay.ts does). */
function newParse(data: string, injected: readonly Injection[]): ParsedData {
  const scan = scanStreamChunk(data, injected, true);
  if (scan?.recording) {
    try {
      return { ok: true, payload: recordedPayload(scan.recording) };
    } catch {
      // falls through to the whole parse, as the relay does
    }
  }
  return oldParse(data);
}

/** A turn as handleChat assembles it from the recorded events, with the first error message. */
function assemble(events: ParsedData[]): { turn: AssembledCompletion; error: string | null; thrown: string[] } {
  const assembler = new TurnAssembler();
  let error: string | null = null;
  // Shapes TurnAssembler throws on (a null logprobs entry) must throw alike on both paths.
  const thrown: string[] = [];
  for (const parsed of events) {
    if (!parsed.ok) error ??= parsed.error.message;
    else {
      try {
        assembler.addChunk(parsed.payload);
      } catch (e) {
        thrown.push((e as Error).message);
      }
    }
  }
  return { turn: assembler.finish(), error, thrown };
}

const INJECTIONS: Injection[][] = [['return_token_ids', 'logprobs'], ['logprobs'], ['return_token_ids'], []];

describe('scanStreamChunk and recordedPayload: the recording without whole-chunk parses', () => {
  it('records what JSON.parse of each chunk recorded, and strips what the old path stripped, over generated streams', () => {
    let followed = 0;
    let total = 0;
    for (let seed = 1; seed <= 400; seed++) {
      const rng = random(seed);
      const injected = INJECTIONS[seed % INJECTIONS.length]!;
      const texts = Array.from({ length: 8 }, (_, i) => JSON.stringify(chunk(rng, i === 0)));
      for (const data of texts) {
        total += 1;
        const scan = scanStreamChunk(data, injected, true);
        if (scan?.recording) followed += 1;
        // The agent's copy: what parsing, stripping and re-serialising gave.
        if (scan) assert.equal(scan.agentText, JSON.stringify(stripInjected(JSON.parse(data), injected)), `seed ${seed}: ${data}`);
        // Each chunk alone, so a difference points at its text.
        assert.deepStrictEqual(assemble([newParse(data, injected)]), assemble([oldParse(data)]), `seed ${seed}: ${data}`);
      }
      assert.deepStrictEqual(
        assemble(texts.map((data) => newParse(data, injected))),
        assemble(texts.map(oldParse)),
        `seed ${seed}: the whole stream`,
      );
    }
    assert.ok(followed > total * 0.7, `most generated chunks are read from the text (${followed} of ${total})`);
  });

  it('records the same from oddly spaced and differently escaped text', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const rng = random(seed * 7919);
      const injected = INJECTIONS[seed % INJECTIONS.length]!;
      const texts = Array.from({ length: 6 }, (_, i) => {
        const text = JSON.stringify(chunk(rng, i === 0));
        return rng() < 0.5 ? oddlySpaced(rng, text) : escapedDifferently(text);
      });
      for (const data of texts) {
        assert.deepStrictEqual(assemble([newParse(data, injected)]), assemble([oldParse(data)]), `seed ${seed}: ${data}`);
        // Whatever formatting came, the agent's copy is the same JSON value as the old path's.
        const scan = scanStreamChunk(data, injected, true);
        if (scan) assert.deepStrictEqual(JSON.parse(scan.agentText), stripInjected(JSON.parse(data), injected), `seed ${seed}: ${data}`);
      }
    }
  });

  it('records the same error, and nothing more, from broken text', () => {
    let brokenCount = 0;
    for (let seed = 1; seed <= 1500; seed++) {
      const rng = random(seed * 104729);
      const injected = INJECTIONS[seed % INJECTIONS.length]!;
      const text = JSON.stringify(chunk(rng, rng() < 0.2));
      const data = broken(rng, rng() < 0.3 ? oddlySpaced(rng, text) : text);
      if (!oldParse(data).ok) brokenCount += 1;
      assert.deepStrictEqual(assemble([newParse(data, injected)]), assemble([oldParse(data)]), `seed ${seed}: ${data}`);
    }
    assert.ok(brokenCount > 1000, `most mutated chunks are invalid JSON (${brokenCount})`);
  });

  it('reads hand-picked edge cases like JSON.parse', () => {
    const cases = [
      '{"choices":[{"logprobs":{"content":[{"token":"a","logprob":-1,"logprob":-2}]}}]}',
      '{"choices":[{"logprobs":null,"logprobs":{"content":[{"token":"b","logprob":-1}]}}]}',
      '{"choices":[{"token_ids":[1],"token_ids":[2,3]}]}',
      '{"choices":[{"token_ids":[1]}],"choices":[]}',
      '{"choices":[{"token_ids":[01]}]}',
      '{"choices":[{"token_ids":[1.]}]}',
      '{"choices":[{"token_ids":[-]}]}',
      '{"choices":[{"token_ids":[1e400, -1e-400, 1E+2]}]}',
      '{"choices":[{"logprobs":{"content":[{"token":"\\ud83d\\ude42","logprob":1e400}]}}]}',
      '{"choices":[{"logprobs":{"content":[{"token":"\\x"}]}}]}',
      '{"choices":[{"logprobs":{"content":[{"token":"a\tb"}]}}]}',
      '{"choices":[{"logprobs":{"content":[{"token":"a\u0011b"}]}}]}',
      '{"choices":[{"logprobs":{"content":[{"token":"a","top_logprobs":[{"token":"\u001f"}]}]}}]}',
      '{"choices":[{"logprobs":{"content":[{"token":"a","extra":"\u0001"}]}}]}',
      '{"choices":[{"logprobs":{"content":[{"token":"a","bytes":[1,2,]}]}}]}',
      '{"choices":[{"logprobs":{"content":[{"token":"a","bytes":[1,2] }]}}]}',
      '{"choices":[{"logprobs":{"content":[{"token":"a","top_logprobs":[null]}]}}]}',
      '{"choices":[{"logprobs":{"content":[{"token":"a","top_logprobs":[{"token":"b","logprob":"x"}]}]}}]}',
      '{"choices":[{"logprobs":{"content":[{"tok\\u0065n":"a"}]}}]}',
      '{"choices":[{"logprobs":{"content":[{"token":"a"}]}, "delta": {"content": "x"}}], "usage": {"total_tokens": 3}}',
      '{"choices":[{"logprobs":{"content":[{"token":"a"}]}},{"logprobs":{"content":[{"token":"z"}]},"token_ids":[9]}]}',
      '{"choices":[{"logprobs":{"content":[{"token":"a"}]}},{"logprobs":{"content":[{"token":"z",}]}}]}',
      '{"choices":[{"logprobs":truex}]}',
      '{"choices":[{"logprobs":nul}]}',
      '{"choices":[{"logprobs":{"content":[]}}]}trailing',
      '{"choices":[{"logprobs":{"content":[{"token":"a","logprob":-0}]}}]}',
      '{"choices":[{"logprobs":{"content":[{"token":"a","logprob":--1}]}}]}',
      '{"choices":[{"logprobs":{"content":[{"token":"a","logprob":-1.5e-3}]}, "token_ids": [7]}], "prompt_token_ids": [1, 2]}',
    ];
    for (const data of cases) {
      for (const injected of INJECTIONS) {
        assert.deepStrictEqual(assemble([newParse(data, injected)]), assemble([oldParse(data)]), `${injected.join(',')}: ${data}`);
      }
    }
  });

  it('reads a vLLM-like chunk from the text, leaving only the small rest to parse', () => {
    const data = JSON.stringify({
      id: 'c',
      choices: [
        {
          index: 0,
          delta: { content: 'hi' },
          logprobs: {
            content: [{ token: 'hi', logprob: -0.5, bytes: [104, 105], top_logprobs: [{ token: 'hi', logprob: -0.5, bytes: [104, 105] }] }],
          },
          finish_reason: null,
          token_ids: [7],
        },
      ],
    });
    const scan = scanStreamChunk(data, ['return_token_ids', 'logprobs'], true);
    assert.ok(scan?.recording, 'the chunk is followed');
    assert.equal(scan.recording.rest, '{"id":"c","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}');
    assert.deepStrictEqual(scan.recording.tokenIds, [7]);
    assert.deepStrictEqual(scan.recording.logprobs, {
      content: [{ token: 'hi', logprob: -0.5, top_logprobs: [{ token: 'hi', logprob: -0.5 }] }],
    });
  });
});

/** An http.ServerResponse stand-in that keeps what was written. */
function collectingResponse() {
  const writes: Array<string | Buffer> = [];
  let ended = false;
  const res = {
    write: (text: string | Buffer) => writes.push(text) > 0,
    end: (text?: string) => {
      if (text) writes.push(text);
      ended = true;
    },
    destroy: () => undefined,
  };
  return { res: res as unknown as http.ServerResponse, writes, ended: () => ended };
}

/** The old relay: every event parsed, stripped on a copy and re-serialised (unparseable data as it came). */
function oldRelay(body: Buffer, injected: readonly Injection[]): { bytes: string; recorded: ParsedData[] } {
  const splitter = new SseSplitter();
  const events = [...splitter.push(body), ...splitter.flush()];
  let bytes = '';
  const recorded: ParsedData[] = [];
  for (const event of events) {
    const data = eventData(event);
    if (data === null || data === '[DONE]') {
      bytes += `${event}\n\n`;
      continue;
    }
    const parsed = oldParse(data);
    recorded.push(parsed);
    bytes += parsed.ok ? `data: ${JSON.stringify(stripInjected(structuredClone(parsed.payload), injected))}\n\n` : `${event}\n\n`;
  }
  return { bytes: injected.length === 0 ? body.toString('utf8') : bytes, recorded };
}

describe('relayStream: whole streams, cut at random places', () => {
  it('writes what the old relay wrote and records the same turn, however the bytes arrive', async () => {
    for (let seed = 1; seed <= 60; seed++) {
      const rng = random(seed * 31);
      const injected = INJECTIONS[seed % INJECTIONS.length]!;
      const events = Array.from({ length: 12 }, (_, i) => `data: ${JSON.stringify(chunk(rng, i === 0))}\n\n`);
      if (rng() < 0.3) events.splice(3, 0, ': keep-alive\n\n', 'event: message\ndata: {"choices":[{"delta":{"content":"x"}}]}\n\n');
      const body = Buffer.from(`${events.join('')}data: [DONE]\n\n`);
      const expected = oldRelay(body, injected);

      const upstream = new PassThrough();
      const { res, writes, ended } = collectingResponse();
      const recorded: ParsedData[] = [];
      const done = relayStream(upstream as unknown as http.IncomingMessage, res, injected, (_data, parsed) => recorded.push(parsed));
      // Cut anywhere (inside events, inside `data:`, inside characters), with a turn of the event loop between some reads.
      let offset = 0;
      while (offset < body.length) {
        const size = rng() < 0.2 ? body.length : 1 + Math.floor(rng() * 400);
        upstream.write(body.subarray(offset, offset + size));
        offset += size;
        if (rng() < 0.5) await new Promise((resolve) => setImmediate(resolve));
      }
      upstream.end();
      assert.equal(await done, null, `seed ${seed}: the stream ended cleanly`);
      assert.ok(ended(), `seed ${seed}: the response was ended`);
      const written = Buffer.concat(writes.map((w) => (typeof w === 'string' ? Buffer.from(w) : w))).toString('utf8');
      assert.equal(written, expected.bytes, `seed ${seed}: the agent's bytes`);
      assert.deepStrictEqual(assemble(recorded), assemble(expected.recorded), `seed ${seed}: the recorded turn`);
    }
  });
});
