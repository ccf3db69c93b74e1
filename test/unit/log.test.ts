// Log lines: secrets redacted at any depth, errors serialised, the human format readable.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatLogLine } from '../../src/log.js';

describe('formatLogLine', () => {
  it('writes one JSON object per line with the fields given', () => {
    const line = formatLogLine({ level: 30, msg: 'rollout finished', reward: 1 }, 'json');
    assert.ok(line.endsWith('\n') && !line.slice(0, -1).includes('\n'), 'exactly one line');
    assert.deepEqual(JSON.parse(line), { level: 30, msg: 'rollout finished', reward: 1 });
  });

  it('redacts api keys and authorization headers wherever they sit', () => {
    const secret = 'sk-live-0123456789';
    const entry = {
      level: 50,
      api_key: secret,
      request: { apiKey: secret, headers: { authorization: `Bearer ${secret}` } },
      nested: [{ deeper: { api_key: secret } }],
    };
    for (const format of ['json', 'human'] as const) {
      const line = formatLogLine(entry, format);
      assert.ok(!line.includes(secret), `${format}: ${line}`);
      assert.equal(line.split('[redacted]').length - 1, 4, `${format}: every occurrence is redacted`);
    }
  });

  it('serialises errors with their type, message, stack and cause', () => {
    const cause = new RangeError('inner');
    const logged = JSON.parse(formatLogLine({ level: 50, err: new TypeError('outer', { cause }) }, 'json'));
    assert.equal(logged.err.type, 'TypeError');
    assert.equal(logged.err.message, 'outer');
    assert.match(logged.err.stack, /TypeError: outer/);
    assert.equal(logged.err.cause.type, 'RangeError');
    assert.equal(logged.err.cause.message, 'inner');
  });

  it('writes `level: message (fields)` for a person, leaving out the machine fields', () => {
    const line = formatLogLine(
      { level: 40, time: 1, pid: 2, name: 'opencode-env', msg: 'prlimit not found', err: new Error('boom'), n: 3 },
      'human',
    );
    assert.equal(line, 'warn: prlimit not found (err=boom, n=3)\n');
  });
});
