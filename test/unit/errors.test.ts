// Covers the error taxonomy of src/errors.ts (names, kinds, classifyError) and callTool's parsing and classification.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import {
  classifyError,
  ConfigError,
  InfrastructureError,
  INFRASTRUCTURE_ERROR_KINDS,
  InvalidInputError,
  OpencodeEnvError,
  SandboxError,
} from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { callTool } from '../../src/tools/call-tool.js';
import { defineTool, type CallContext, type SessionServices } from '../../src/tools/tool.js';

describe('error classes', () => {
  const instances = [
    new OpencodeEnvError('m'),
    new InvalidInputError('m'),
    new ConfigError('m'),
    new InfrastructureError('upstream', 'm'),
    new SandboxError('m'),
  ];

  for (const error of instances) {
    it(`${error.constructor.name} sets name to its class name and is an OpencodeEnvError`, () => {
      assert.equal(error.name, error.constructor.name);
      assert.ok(error instanceof OpencodeEnvError);
      assert.ok(error instanceof Error);
      assert.equal(error.message, 'm');
    });
  }

  it('a subclass defined elsewhere also gets its own name', () => {
    class CustomError extends InvalidInputError {}
    assert.equal(new CustomError('x').name, 'CustomError');
  });

  it('InfrastructureError keeps its kind and its cause', () => {
    const cause = new Error('socket hang up');
    for (const kind of INFRASTRUCTURE_ERROR_KINDS) {
      const error = new InfrastructureError(kind, 'failed', { cause });
      assert.equal(error.kind, kind);
      assert.equal(error.cause, cause);
    }
  });
});

describe('classifyError', () => {
  it('InvalidInputError is invalid_input', () => {
    assert.deepEqual(classifyError(new InvalidInputError('bad seed')), { class: 'invalid_input', kind: null, message: 'bad seed' });
  });

  it('InfrastructureError is infrastructure, with its kind', () => {
    assert.deepEqual(classifyError(new InfrastructureError('verifier', 'timed out')), {
      class: 'infrastructure',
      kind: 'verifier',
      message: 'timed out',
    });
  });

  it('SandboxError is sandbox', () => {
    assert.deepEqual(classifyError(new SandboxError('gone')), { class: 'sandbox', kind: null, message: 'gone' });
  });

  it('a plain Error is internal, its message prefixed', () => {
    assert.deepEqual(classifyError(new TypeError('x is undefined')), {
      class: 'internal',
      kind: null,
      message: 'internal error: x is undefined',
    });
  });

  it('a ConfigError (not a call failure) is internal too', () => {
    assert.equal(classifyError(new ConfigError('bad env')).class, 'internal');
  });

  it('a thrown non-Error is internal, stringified', () => {
    assert.deepEqual(classifyError('just a string'), { class: 'internal', kind: null, message: 'internal error: just a string' });
    assert.equal(classifyError(42).message, 'internal error: 42');
    assert.equal(classifyError(undefined).message, 'internal error: undefined');
  });
});

describe('callTool', () => {
  const logger = createLogger('silent');
  const services: SessionServices = { episode: undefined as never, rollouts: undefined as never, logger };
  const call: CallContext = { signal: new AbortController().signal, progress: () => {} };

  /** A tool that adds two numbers, or fails as its `fail` argument says. */
  const adder = defineTool({
    name: 'add',
    title: 'Add',
    description: 'Adds two numbers',
    inputSchema: z.strictObject({ a: z.number(), b: z.number().default(0), fail: z.enum(['infrastructure', 'sandbox', 'bug']).optional() }),
    outputSchema: z.object({ sum: z.number() }),
    hints: { readOnlyHint: true },
    async handler({ a, b, fail }, context) {
      context.progress(`adding ${a} and ${b}`);
      if (fail === 'infrastructure') throw new InfrastructureError('upstream', 'the LLM is down');
      if (fail === 'sandbox') throw new SandboxError('sandbox gone');
      if (fail === 'bug') throw new TypeError('oops');
      return { sum: a + b };
    },
  });

  it('returns the handler value on success, with the schema defaults applied', async () => {
    assert.deepEqual(await callTool(adder, { a: 2, b: 3 }, services, call), { ok: true, value: { sum: 5 } });
    assert.deepEqual(await callTool(adder, { a: 2 }, services, call), { ok: true, value: { sum: 2 } });
  });

  it('passes the call context to the handler', async () => {
    const messages: string[] = [];
    await callTool(adder, { a: 1, b: 1 }, services, { ...call, progress: (message) => messages.push(message) });
    assert.deepEqual(messages, ['adding 1 and 1']);
  });

  it('bad arguments are invalid_input, naming the field', async () => {
    const outcome = await callTool(adder, { a: 'two' }, services, call);
    assert.equal(outcome.ok, false);
    assert.ok(!outcome.ok);
    assert.equal(outcome.error.class, 'invalid_input');
    assert.match(outcome.error.message, /\ba\b/);
  });

  it('a missing required field is invalid_input, naming it', async () => {
    const outcome = await callTool(adder, {}, services, call);
    assert.ok(!outcome.ok);
    assert.equal(outcome.error.class, 'invalid_input');
    assert.match(outcome.error.message, /\ba: /);
  });

  it('an unknown field is invalid_input, naming it', async () => {
    const outcome = await callTool(adder, { a: 1, c: 2 }, services, call);
    assert.ok(!outcome.ok);
    assert.equal(outcome.error.class, 'invalid_input');
    assert.match(outcome.error.message, /\bc\b/);
  });

  it('missing arguments (undefined) are parsed as {}', async () => {
    const outcome = await callTool(adder, undefined, services, call);
    assert.ok(!outcome.ok);
    assert.equal(outcome.error.class, 'invalid_input');
    assert.match(outcome.error.message, /\ba: /);
  });

  it('a handler throwing InfrastructureError is infrastructure, with its kind', async () => {
    const outcome = await callTool(adder, { a: 1, fail: 'infrastructure' }, services, call);
    assert.deepEqual(outcome, { ok: false, error: { class: 'infrastructure', kind: 'upstream', message: 'the LLM is down' } });
  });

  it('a handler throwing SandboxError is sandbox', async () => {
    const outcome = await callTool(adder, { a: 1, fail: 'sandbox' }, services, call);
    assert.deepEqual(outcome, { ok: false, error: { class: 'sandbox', kind: null, message: 'sandbox gone' } });
  });

  it('a handler bug is internal', async () => {
    const outcome = await callTool(adder, { a: 1, fail: 'bug' }, services, call);
    assert.deepEqual(outcome, { ok: false, error: { class: 'internal', kind: null, message: 'internal error: oops' } });
  });
});
