// Covers injectFields, stripInjected and refusedInjection: what the recording proxy adds to a request and removes from the answer.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { injectFields, refusedInjection, stripInjected, type Injection, type InjectionPolicy } from '../../src/core/proxy/injection.js';

const policy: InjectionPolicy = { requestTokenIds: true, topLogprobs: 5, disableThinking: false, maxTokensCap: null };
const none: ReadonlySet<Injection> = new Set();

function request(extra: Record<string, unknown> = {}): Record<string, any> {
  return { model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }], ...extra };
}

describe('injectFields: token ids and logprobs', () => {
  it('adds return_token_ids, logprobs and top_logprobs when the agent set none of them', () => {
    const { body, injected, extras } = injectFields(request(), policy, none);
    assert.equal(body.return_token_ids, true);
    assert.equal(body.logprobs, true);
    assert.equal(body.top_logprobs, policy.topLogprobs);
    assert.deepEqual(injected, ['return_token_ids', 'logprobs']);
    assert.deepEqual(extras, []);
  });

  it('asks for no alternatives when topLogprobs is 0', () => {
    const { body, injected } = injectFields(request(), { ...policy, topLogprobs: 0 }, none);
    assert.equal(body.logprobs, true);
    assert.equal('top_logprobs' in body, false);
    assert.ok(injected.includes('logprobs'));
  });

  it('does not ask for token ids when the policy says not to', () => {
    const { body, injected } = injectFields(request(), { ...policy, requestTokenIds: false }, none);
    assert.equal('return_token_ids' in body, false);
    assert.deepEqual(injected, ['logprobs']);
  });

  it("leaves the agent's own settings alone and does not report them as injected", () => {
    const original = request({ logprobs: false, return_token_ids: false, top_logprobs: 2 });
    const { body, injected } = injectFields(original, policy, none);
    assert.equal(body.logprobs, false);
    assert.equal(body.return_token_ids, false);
    assert.equal(body.top_logprobs, 2);
    assert.deepEqual(injected, []);
  });

  it('an agent that asked for logprobs itself keeps its top_logprobs, and only token ids are injected', () => {
    const { body, injected } = injectFields(request({ logprobs: true, top_logprobs: 1 }), policy, none);
    assert.equal(body.top_logprobs, 1);
    assert.deepEqual(injected, ['return_token_ids']);
  });

  it('does not inject a field the upstream refused earlier', () => {
    const withoutIds = injectFields(request(), policy, new Set<Injection>(['return_token_ids']));
    assert.equal('return_token_ids' in withoutIds.body, false);
    assert.deepEqual(withoutIds.injected, ['logprobs']);

    const withoutAny = injectFields(request(), policy, new Set<Injection>(['return_token_ids', 'logprobs']));
    assert.equal('logprobs' in withoutAny.body, false);
    assert.equal('top_logprobs' in withoutAny.body, false);
    assert.deepEqual(withoutAny.injected, []);
  });
});

describe('injectFields: other changes', () => {
  it('disableThinking merges enable_thinking=false into existing chat_template_kwargs', () => {
    const original = request({ chat_template_kwargs: { add_generation_prompt: true, enable_thinking: true } });
    const { body, extras } = injectFields(original, { ...policy, disableThinking: true }, none);
    assert.deepEqual(body.chat_template_kwargs, { add_generation_prompt: true, enable_thinking: false });
    assert.deepEqual(extras, ['chat_template_kwargs.enable_thinking']);
  });

  it('disableThinking creates chat_template_kwargs when there is none', () => {
    const { body } = injectFields(request(), { ...policy, disableThinking: true }, none);
    assert.deepEqual(body.chat_template_kwargs, { enable_thinking: false });
  });

  it('caps max_tokens and max_completion_tokens above the cap, naming each', () => {
    const cap = 1000;
    const { body, extras } = injectFields(
      request({ max_tokens: cap * 32, max_completion_tokens: cap + 1 }),
      { ...policy, maxTokensCap: cap },
      none,
    );
    assert.equal(body.max_tokens, cap);
    assert.equal(body.max_completion_tokens, cap);
    assert.deepEqual(extras, ['max_tokens', 'max_completion_tokens']);
  });

  it('leaves a limit at or below the cap as it is', () => {
    const cap = 1000;
    const { body, extras } = injectFields(
      request({ max_tokens: cap, max_completion_tokens: cap - 1 }),
      { ...policy, maxTokensCap: cap },
      none,
    );
    assert.equal(body.max_tokens, cap);
    assert.equal(body.max_completion_tokens, cap - 1);
    assert.deepEqual(extras, []);
  });

  it('sets max_tokens to the cap when the agent set neither limit', () => {
    const { body, extras } = injectFields(request(), { ...policy, maxTokensCap: 512 }, none);
    assert.equal(body.max_tokens, 512);
    assert.equal('max_completion_tokens' in body, false);
    assert.deepEqual(extras, ['max_tokens']);
  });

  it('does not add max_tokens when the agent set only max_completion_tokens', () => {
    const { body } = injectFields(request({ max_completion_tokens: 10 }), { ...policy, maxTokensCap: 512 }, none);
    assert.equal('max_tokens' in body, false);
  });

  it('does not touch the limits without a cap', () => {
    const { body, extras } = injectFields(request({ max_tokens: 1e6 }), policy, none);
    assert.equal(body.max_tokens, 1e6);
    assert.deepEqual(extras, []);
  });

  it('does not mutate the original body (nor its chat_template_kwargs)', () => {
    const original = request({ max_tokens: 99_999, chat_template_kwargs: { a: 1 } });
    const snapshot = structuredClone(original);
    injectFields(original, { requestTokenIds: true, topLogprobs: 5, disableThinking: true, maxTokensCap: 100 }, none);
    assert.deepEqual(original, snapshot);
  });
});

describe('stripInjected', () => {
  /** A stream chunk as vLLM answers an injected request. */
  const streamChunk = () => ({
    prompt_token_ids: [1, 2, 3],
    choices: [
      { index: 0, delta: { content: 'hi' }, token_ids: [7], logprobs: { content: [{ token: 'hi', logprob: -0.1 }] }, finish_reason: null },
    ],
  });

  it('removes prompt_token_ids, token_ids and logprobs when both were injected', () => {
    const stripped = stripInjected(streamChunk(), ['return_token_ids', 'logprobs']);
    assert.deepEqual(stripped, { choices: [{ index: 0, delta: { content: 'hi' }, finish_reason: null }] });
  });

  it('removes only what was injected: logprobs the agent asked for stay', () => {
    const stripped = stripInjected(streamChunk(), ['return_token_ids']);
    assert.equal('prompt_token_ids' in stripped, false);
    assert.equal('token_ids' in stripped.choices[0], false);
    assert.deepEqual(stripped.choices[0].logprobs, streamChunk().choices[0]!.logprobs);
  });

  it('removes only what was injected: token ids the agent asked for stay', () => {
    const stripped = stripInjected(streamChunk(), ['logprobs']);
    assert.deepEqual(stripped.prompt_token_ids, [1, 2, 3]);
    assert.deepEqual(stripped.choices[0].token_ids, [7]);
    assert.equal('logprobs' in stripped.choices[0], false);
  });

  it('leaves everything when nothing was injected', () => {
    assert.deepEqual(stripInjected(streamChunk(), []), streamChunk());
  });

  it('strips every choice of a whole response', () => {
    const response = {
      id: 'x',
      prompt_token_ids: [1],
      choices: [0, 1].map((index) => ({
        index,
        message: { role: 'assistant', content: 'c' },
        token_ids: [index],
        logprobs: { content: [] },
      })),
      usage: { total_tokens: 3 },
    };
    assert.deepEqual(stripInjected(response, ['return_token_ids', 'logprobs']), {
      id: 'x',
      choices: [0, 1].map((index) => ({ index, message: { role: 'assistant', content: 'c' } })),
      usage: { total_tokens: 3 },
    });
  });

  it('passes non-objects and bodies without choices through', () => {
    assert.equal(stripInjected(null, ['logprobs']), null);
    assert.equal(stripInjected('text', ['logprobs']), 'text');
    assert.deepEqual(stripInjected({ error: { message: 'x' } }, ['logprobs']), { error: { message: 'x' } });
  });
});

describe('refusedInjection', () => {
  it('finds the injected field an error body names', () => {
    const body = JSON.stringify({
      object: 'error',
      message: "1 validation error: extra field 'return_token_ids' not permitted",
      code: 400,
    });
    assert.equal(refusedInjection(body, ['return_token_ids', 'logprobs']), 'return_token_ids');
    assert.equal(
      refusedInjection('{"error":{"message":"logprobs is not supported for this model"}}', ['return_token_ids', 'logprobs']),
      'logprobs',
    );
  });

  it('ignores a field that was not injected', () => {
    assert.equal(refusedInjection('logprobs is not supported', ['return_token_ids']), undefined);
  });

  it('is undefined for an unrelated 400', () => {
    const body = JSON.stringify({
      error: { message: "This model's maximum context length is 8192 tokens", type: 'invalid_request_error' },
    });
    assert.equal(refusedInjection(body, ['return_token_ids', 'logprobs']), undefined);
  });
});
