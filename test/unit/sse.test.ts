// Covers SseSplitter and eventData (SSE events however the bytes were chunked), TurnAssembler (a completion rebuilt from chunks, token ids included)
// and the textual JSON edits of the relay-first path (stripInjectedText, appendMembers).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { stripInjected, type Injection } from '../../src/core/proxy/injection.js';
import { appendMembers, stripInjectedText } from '../../src/core/proxy/json-text.js';
import { eventData, SseSplitter } from '../../src/core/proxy/sse.js';
import { tokenIdFromLogprobToken, TurnAssembler } from '../../src/core/proxy/turn-assembler.js';
import { tokenize, topLogprobs, type FakeToken } from '../../src/scripted-llm/fake-tokens.js';
import { random } from '../helpers/random.js';

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

const TOP = 3;
const PROMPT_IDS = [101, 102, 103, 104];

/** vLLM-style logprobs for sampled tokens, with TOP alternatives each. */
function logprobsOf(tokens: FakeToken[]) {
  return { content: tokens.map((t) => ({ token: t.token, logprob: t.logprob, top_logprobs: topLogprobs(t, TOP) })) };
}

/** One stream chunk carrying `delta`, and the token data for `tokens` (as vLLM sends with return_token_ids). */
function chunk(delta: Record<string, unknown>, tokens: FakeToken[], extra: Record<string, unknown> = {}) {
  return {
    id: 'chatcmpl-1',
    object: 'chat.completion.chunk',
    choices: [{ index: 0, delta, logprobs: logprobsOf(tokens), token_ids: tokens.map((t) => t.id), finish_reason: null }],
    ...extra,
  };
}

describe('TurnAssembler: a streamed completion', () => {
  // What the model "says": reasoning (sent once as reasoning_content, once as reasoning), text, and two tool calls.
  const thinking1 = tokenize('Let me think');
  const thinking2 = tokenize(' about it.');
  const text = tokenize('I will write two files.');
  const argsA = tokenize('{"path":"a.txt","content":"A"}');
  const argsB = tokenize('{"path":"b.txt","content":"B"}');
  const usage = { prompt_tokens: PROMPT_IDS.length, completion_tokens: 42, total_tokens: 46 };

  const chunks: unknown[] = [];
  const emitted: FakeToken[] = [];
  const emit = (delta: Record<string, unknown>, tokens: FakeToken[], extra: Record<string, unknown> = {}) => {
    chunks.push(chunk(delta, tokens, extra));
    emitted.push(...tokens);
  };
  emit({ role: 'assistant', content: '' }, [], { prompt_token_ids: PROMPT_IDS });
  for (const t of thinking1) emit({ reasoning_content: t.token }, [t]);
  for (const t of thinking2) emit({ reasoning: t.token }, [t]);
  for (const t of text) emit({ content: t.token }, [t]);
  // Both calls open with their id and name, then their arguments arrive interleaved, index 1 first.
  emit({ tool_calls: [{ index: 1, id: 'call_b', type: 'function', function: { name: 'wri', arguments: '' } }] }, []);
  emit({ tool_calls: [{ index: 0, id: 'call_a', type: 'function', function: { name: 'write', arguments: '' } }] }, []);
  emit({ tool_calls: [{ index: 1, function: { name: 'te' } }] }, []);
  const longest = Math.max(argsA.length, argsB.length);
  for (let i = 0; i < longest; i++) {
    if (argsB[i]) emit({ tool_calls: [{ index: 1, function: { arguments: argsB[i]!.token } }] }, [argsB[i]!]);
    if (argsA[i]) emit({ tool_calls: [{ index: 0, function: { arguments: argsA[i]!.token } }] }, [argsA[i]!]);
  }
  chunks.push({ id: 'chatcmpl-1', choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: 'tool_calls' }] });
  chunks.push({ id: 'chatcmpl-1', choices: [], usage });

  const assembler = new TurnAssembler();
  for (const c of chunks) assembler.addChunk(c);
  const turn = assembler.finish();

  it('joins the content deltas', () => {
    assert.equal(turn.response.content, text.map((t) => t.token).join(''));
  });

  it('joins reasoning sent as reasoning_content and as reasoning', () => {
    assert.equal(turn.response.reasoning, 'Let me think about it.');
  });

  it('rebuilds parallel tool calls by index, in index order, whatever order their deltas came in', () => {
    assert.deepEqual(turn.response.tool_calls, [
      { id: 'call_a', name: 'write', arguments: '{"path":"a.txt","content":"A"}' },
      { id: 'call_b', name: 'write', arguments: '{"path":"b.txt","content":"B"}' },
    ]);
    for (const call of turn.response.tool_calls) assert.doesNotThrow(() => JSON.parse(call.arguments));
  });

  it('keeps the finish reason and the usage block', () => {
    assert.equal(turn.finish_reason, 'tool_calls');
    assert.deepEqual(turn.usage, usage);
  });

  it('takes prompt_token_ids from the first chunk', () => {
    assert.deepEqual(turn.prompt_token_ids, PROMPT_IDS);
  });

  it('collects the sampled tokens, ids and logprobs of every chunk, in order', () => {
    assert.deepEqual(
      turn.completion_tokens,
      emitted.map((t) => t.token),
    );
    assert.deepEqual(
      turn.completion_token_ids,
      emitted.map((t) => t.id),
    );
    assert.deepEqual(
      turn.per_token_logps,
      emitted.map((t) => t.logprob),
    );
  });

  it('collects the alternatives at each position', () => {
    assert.equal(turn.top_logprobs.length, emitted.length);
    assert.deepEqual(
      turn.top_logprobs,
      emitted.map((t) => topLogprobs(t, TOP).map(({ token, logprob }) => ({ token, logprob }))),
    );
  });

  it('counts the chunks', () => {
    assert.equal(turn.n_chunks, chunks.length);
  });
});

describe('TurnAssembler: details of a stream', () => {
  it('a missing or non-numeric logprob becomes null, keeping positions aligned', () => {
    const assembler = new TurnAssembler();
    assembler.addChunk({
      choices: [
        {
          delta: { content: 'abc' },
          logprobs: {
            content: [
              { token: 'a', logprob: -0.5, top_logprobs: [{ token: 'a', logprob: -0.5 }] },
              { token: 'b', top_logprobs: [{ token: 'b' }] },
              { token: 'c', logprob: null, top_logprobs: [{ token: 'c', logprob: -1 }] },
            ],
          },
        },
      ],
    });
    const turn = assembler.finish();
    assert.deepEqual(turn.completion_tokens, ['a', 'b', 'c']);
    assert.deepEqual(turn.per_token_logps, [-0.5, null, null]);
    assert.deepEqual(turn.top_logprobs, [[{ token: 'a', logprob: -0.5 }], [{ token: 'b', logprob: null }], [{ token: 'c', logprob: -1 }]]);
  });

  it('keeps the first prompt_token_ids when a later chunk repeats them', () => {
    const assembler = new TurnAssembler();
    assembler.addChunk({ prompt_token_ids: [1, 2], choices: [{ delta: { content: 'x' } }] });
    assembler.addChunk({ prompt_token_ids: [9, 9, 9], choices: [{ delta: { content: 'y' } }] });
    assert.deepEqual(assembler.finish().prompt_token_ids, [1, 2]);
  });

  it('an empty stream gives an empty turn', () => {
    const turn = new TurnAssembler().finish();
    assert.deepEqual(turn.response, { content: '', reasoning: '', tool_calls: [] });
    assert.equal(turn.finish_reason, null);
    assert.equal(turn.usage, null);
    assert.equal(turn.prompt_token_ids, null);
    assert.deepEqual(turn.completion_token_ids, []);
    assert.equal(turn.n_chunks, 0);
  });

  it('ignores chunks without choices', () => {
    const assembler = new TurnAssembler();
    assembler.addChunk({});
    assembler.addChunk({ choices: [] });
    assembler.addChunk({ choices: 'not a list' });
    const turn = assembler.finish();
    assert.equal(turn.response.content, '');
    assert.equal(turn.n_chunks, 3);
  });

  // `data: null` and `data: 3` are valid JSON, so the proxy hands them to addChunk from a stream 'data'
  // handler, where a throw is an uncaught exception; they should count as chunks with nothing in them.
  it('a chunk that parsed to null or a number is ignored, not thrown on', () => {
    const assembler = new TurnAssembler();
    assert.doesNotThrow(() => assembler.addChunk(3));
    assert.doesNotThrow(() => assembler.addChunk(null));
    assert.equal(assembler.finish().n_chunks, 2);
  });
});

describe('tokenIdFromLogprobToken', () => {
  it('reads the id from "token_id:<id>"', () => {
    assert.equal(tokenIdFromLogprobToken('token_id:123'), 123);
    assert.equal(tokenIdFromLogprobToken('token_id:0'), 0);
    assert.equal(tokenIdFromLogprobToken('token_id:151935'), 151935);
  });

  for (const token of ['hello', 'token_id:', 'token_id:12a', 'token_id:-1', ' token_id:5', 'token_id:5 ', 'xtoken_id:5', '123']) {
    it(`${JSON.stringify(token)} is ordinary text (null)`, () => {
      assert.equal(tokenIdFromLogprobToken(token), null);
    });
  }
});

describe('TurnAssembler: token ids spelled out as logprob tokens (--return-tokens-as-token-ids)', () => {
  const tokens = tokenize('print("hi")');
  /** A chunk whose logprob tokens are "token_id:N"; `withIds` also sends return_token_ids' token_ids. */
  const idChunk = (t: FakeToken, withIds: boolean) => ({
    choices: [
      {
        delta: { content: t.token },
        logprobs: { content: [{ token: `token_id:${t.id}`, logprob: t.logprob, top_logprobs: [] }] },
        ...(withIds ? { token_ids: [t.id] } : {}),
      },
    ],
  });

  it('uses the spelled-out ids when the stream has no token_ids', () => {
    const assembler = new TurnAssembler();
    for (const t of tokens) assembler.addChunk(idChunk(t, false));
    const turn = assembler.finish();
    assert.deepEqual(
      turn.completion_token_ids,
      tokens.map((t) => t.id),
    );
    assert.deepEqual(
      turn.completion_tokens,
      tokens.map((t) => `token_id:${t.id}`),
    );
    assert.deepEqual(
      turn.per_token_logps,
      tokens.map((t) => t.logprob),
    );
    assert.equal(turn.response.content, 'print("hi")');
  });

  it('token_ids win when both are present: each id once', () => {
    const assembler = new TurnAssembler();
    for (const t of tokens) assembler.addChunk(idChunk(t, true));
    assert.deepEqual(
      assembler.finish().completion_token_ids,
      tokens.map((t) => t.id),
    );
  });

  it('ordinary text tokens yield no ids', () => {
    const assembler = new TurnAssembler();
    for (const t of tokens) assembler.addChunk({ choices: [{ delta: { content: t.token }, logprobs: logprobsOf([t]) }] });
    const turn = assembler.finish();
    assert.deepEqual(turn.completion_token_ids, []);
    assert.deepEqual(
      turn.completion_tokens,
      tokens.map((t) => t.token),
    );
  });

  it('a stream mixing spelled-out ids and text yields no ids rather than a partial list', () => {
    const [first, second] = tokens;
    const assembler = new TurnAssembler();
    assembler.addChunk(idChunk(first!, false));
    assembler.addChunk({ choices: [{ delta: { content: second!.token }, logprobs: logprobsOf([second!]) }] });
    assert.deepEqual(assembler.finish().completion_token_ids, []);
  });
});

describe('TurnAssembler: a whole (non-streamed) response', () => {
  const text = tokenize('Done: wrote the file.');
  const usage = { prompt_tokens: 4, completion_tokens: text.length, total_tokens: 4 + text.length };
  const response = {
    id: 'chatcmpl-2',
    object: 'chat.completion',
    prompt_token_ids: PROMPT_IDS,
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: text.map((t) => t.token).join(''),
          reasoning_content: 'short thought',
          tool_calls: [
            { id: 'call_1', type: 'function', function: { name: 'read', arguments: '{"path":"x"}' } },
            { id: 'call_2', type: 'function', function: { name: 'bash', arguments: '{"cmd":"ls"}' } },
          ],
        },
        logprobs: logprobsOf(text),
        token_ids: text.map((t) => t.id),
        finish_reason: 'stop',
      },
    ],
    usage,
  };

  const assembler = new TurnAssembler();
  assembler.addResponse(response);
  const turn = assembler.finish();

  it('takes the message text, reasoning and tool calls in order', () => {
    assert.deepEqual(turn.response, {
      content: 'Done: wrote the file.',
      reasoning: 'short thought',
      tool_calls: [
        { id: 'call_1', name: 'read', arguments: '{"path":"x"}' },
        { id: 'call_2', name: 'bash', arguments: '{"cmd":"ls"}' },
      ],
    });
  });

  it('takes the token data, finish reason and usage, as one chunk', () => {
    assert.deepEqual(
      turn.completion_tokens,
      text.map((t) => t.token),
    );
    assert.deepEqual(
      turn.completion_token_ids,
      text.map((t) => t.id),
    );
    assert.deepEqual(
      turn.per_token_logps,
      text.map((t) => t.logprob),
    );
    assert.equal(turn.top_logprobs.length, text.length);
    assert.deepEqual(turn.prompt_token_ids, PROMPT_IDS);
    assert.equal(turn.finish_reason, 'stop');
    assert.deepEqual(turn.usage, usage);
    assert.equal(turn.n_chunks, 1);
  });

  it('reads `reasoning` when there is no reasoning_content', () => {
    const other = new TurnAssembler();
    other.addResponse({ choices: [{ message: { content: 'x', reasoning: 'via reasoning' } }] });
    assert.equal(other.finish().response.reasoning, 'via reasoning');
  });
});

describe('stripInjectedText: injected fields removed from the JSON text, relay first', () => {
  const sets: Injection[][] = [['return_token_ids', 'logprobs'], ['logprobs'], ['return_token_ids'], []];
  const token = (text: string) => tokenize(text)[0]!;
  const logprobs = (t: FakeToken) => ({
    content: [{ token: t.token, logprob: t.logprob, bytes: [1, 2], top_logprobs: topLogprobs(t, 3) }],
  });
  const chunks: unknown[] = [
    {
      id: 'c',
      choices: [{ index: 0, logprobs: null, finish_reason: null, delta: { role: 'assistant', content: '' } }],
      prompt_token_ids: [1, 2],
    },
    {
      id: 'c',
      choices: [{ index: 0, logprobs: logprobs(token('word')), finish_reason: null, delta: { content: 'word' }, token_ids: [7] }],
    },
    { choices: [{ delta: { content: 'a "quoted" }] \\ brace' }, logprobs: logprobs(token('"}]')), token_ids: [] }] },
    {
      choices: [
        { token_ids: [1], logprobs: { content: [] } },
        { index: 1, logprobs: null, token_ids: [2], delta: {} },
      ],
    },
    { choices: [null, 3, 'x', [], { logprobs: 1 }], usage: { total_tokens: 3 } },
    { choices: [], usage: { prompt_tokens: 1 }, prompt_token_ids: [] },
    { prompt_token_ids: [1], logprobs: 'top-level logprobs stay', nested: { choices: [{ logprobs: 1 }] } },
    { choices: { logprobs: 'not an array: left alone' } },
    { 'é🙂': 'ünïcode', choices: [{ logprobs: { content: [{ token: '🙂', logprob: -1 }] }, delta: { content: '🙂' } }] },
    {},
    [1, { logprobs: 2 }],
    'text',
    null,
  ];

  it('gives what parsing, stripping and re-serialising gave, for every injection', () => {
    for (const injected of sets) {
      for (const chunk of chunks) {
        const data = JSON.stringify(chunk);
        assert.equal(
          stripInjectedText(data, injected),
          JSON.stringify(stripInjected(JSON.parse(data), injected)),
          `${injected.join(',')}: ${data}`,
        );
      }
    }
  });

  it("keeps the upstream's own formatting around what it removes", () => {
    const data = '{"a": 1, "choices": [{"logprobs": {"content": [1, 2]}, "b": 2, "token_ids": [3]}], "prompt_token_ids": [4]}';
    assert.equal(stripInjectedText(data, ['logprobs', 'return_token_ids']), '{"a": 1, "choices": [{"b": 2}]}');
    assert.equal(stripInjectedText(' {"choices":[{"logprobs":null}]} ', ['logprobs']), ' {"choices":[{}]} ');
  });

  it('declines (null) what it cannot follow, so the caller parses it', () => {
    for (const data of [
      '{"choices":[{"logprobs":1}',
      '{"choices":[{"logprobs":1}]} trailing',
      '{"logprob\\u0073":1}',
      '{"a" 1}',
      '{"a":"open',
    ]) {
      assert.equal(stripInjectedText(data, ['logprobs']), null, data);
    }
  });
});

describe('appendMembers: injected fields added to a request body without re-serialising it', () => {
  const added = { return_token_ids: true, logprobs: true, top_logprobs: 5, chat_template_kwargs: { enable_thinking: false } };

  it('gives what JSON.stringify of the extended object gives', () => {
    const original = { model: 'm', messages: [{ role: 'user', content: 'a "}" brace' }], stream: true };
    const body = appendMembers(Buffer.from(JSON.stringify(original)), added);
    assert.equal(body.toString(), JSON.stringify({ ...original, ...added }));
  });

  it('handles an empty object, whitespace around it and multi-byte text', () => {
    assert.equal(appendMembers(Buffer.from(' { } \n'), { logprobs: true }).toString(), ' { "logprobs":true} \n');
    assert.deepEqual(JSON.parse(appendMembers(Buffer.from('{ "x": "ü🙂" }\n'), added).toString()), { x: 'ü🙂', ...added });
    assert.equal(appendMembers(Buffer.from('{"a":1}'), {}).toString(), '{"a":1}');
  });
});
