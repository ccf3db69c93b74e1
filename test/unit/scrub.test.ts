// Covers scrubSecrets (secrets removed from traces before they are written), newRolloutId and traceUri.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { newRolloutId, scrubSecrets, TRACE_URI_PREFIX, traceUri } from '../../src/core/traces.js';

const REDACTED = '[redacted]';

describe('scrubSecrets', () => {
  it('replaces every occurrence of a secret', () => {
    const secret = 'sk-abcdef123456';
    const text = `key=${secret}; again ${secret}${secret} end`;
    assert.equal(scrubSecrets(text, [secret]), `key=${REDACTED}; again ${REDACTED}${REDACTED} end`);
  });

  it('replaces each of several secrets', () => {
    const text = 'a=first-secret-1 b=second-secret-2';
    assert.equal(scrubSecrets(text, ['first-secret-1', 'second-secret-2']), `a=${REDACTED} b=${REDACTED}`);
  });

  it('finds a secret containing a quote or backslash inside JSON.stringify output', () => {
    for (const secret of ['pa"ss\\word-123', 'back\\slash\\key', 'tab\tand"quote']) {
      const json = JSON.stringify({ headers: { authorization: `Bearer ${secret}` }, api_key: secret });
      const scrubbed = scrubSecrets(json, [secret]);
      assert.ok(!scrubbed.includes(JSON.stringify(secret).slice(1, -1)), `escaped form of ${JSON.stringify(secret)} left in ${scrubbed}`);
      assert.ok(!scrubbed.includes(secret));
      // Still valid JSON, with the secret gone from the value the reader sees.
      const parsed = JSON.parse(scrubbed) as { headers: { authorization: string } };
      assert.equal(parsed.headers.authorization, `Bearer ${REDACTED}`);
    }
  });

  // A trace holds JSON text inside JSON (tool-call arguments, tool results), so a secret can be escaped twice.
  it('finds a secret embedded in JSON twice over (a JSON string inside JSON)', () => {
    const secret = 'q"uote-secret-9';
    const doubly = JSON.stringify({ body: JSON.stringify({ api_key: secret }) });
    const scrubbed = scrubSecrets(doubly, [secret]);
    // Doubly escaped, the quote is \\\" : neither the raw nor the singly escaped form matches it.
    const doublyEscaped = JSON.stringify(JSON.stringify(secret).slice(1, -1)).slice(1, -1);
    assert.ok(!scrubbed.includes(doublyEscaped), `doubly escaped secret left in ${scrubbed}`);
  });

  it('ignores secrets shorter than 8 characters', () => {
    const text = 'EMPTY key, short 1234567 stays';
    assert.equal(scrubSecrets(text, ['EMPTY', '1234567']), text);
  });

  it('scrubs a secret of exactly 8 characters', () => {
    assert.equal(scrubSecrets('x=12345678', ['12345678']), `x=${REDACTED}`);
  });

  it('ignores undefined and empty entries', () => {
    const text = 'nothing secret here';
    assert.equal(scrubSecrets(text, [undefined, '', undefined]), text);
    assert.equal(scrubSecrets('k=long-enough-key', [undefined, 'long-enough-key']), `k=${REDACTED}`);
  });

  it('treats secrets literally, not as patterns', () => {
    const secret = 'a.b*c+d?(e)';
    assert.equal(scrubSecrets(`[${secret}] axxbcccd`, [secret]), `[${REDACTED}] axxbcccd`);
  });
});

describe('newRolloutId', () => {
  it('is rollout-<UTC timestamp to the second>-<8 hex chars>', () => {
    const now = new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678));
    const id = newRolloutId(now);
    assert.match(id, /^rollout-20240102T030405Z-[0-9a-f]{8}$/);
  });

  it('differs between two ids of the same instant', () => {
    const now = new Date();
    const ids = new Set(Array.from({ length: 100 }, () => newRolloutId(now)));
    assert.equal(ids.size, 100);
  });

  it('is usable as a trace file name (the store accepts [A-Za-z0-9][A-Za-z0-9._-]*)', () => {
    assert.match(newRolloutId(), /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/);
  });
});

describe('traceUri', () => {
  it('is the trace prefix followed by the rollout id', () => {
    const id = 'rollout-20240102T030405Z-deadbeef';
    assert.equal(traceUri(id), `opencode-env://traces/${id}`);
    assert.ok(traceUri(id).startsWith(TRACE_URI_PREFIX));
  });
});
