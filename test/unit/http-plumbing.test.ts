// Covers HTTP mode's plumbing below the routes: the token check, body limits, and the session registry's cap and reaper.
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { createRuntime } from '../../src/runtime.js';
import { isAuthorized } from '../../src/transports/http/auth.js';
import { HttpError, readJson } from '../../src/transports/http/body.js';
import { CapacityError, SessionRegistry } from '../../src/transports/http/sessions.js';

function request(headers: Record<string, string>, body = ''): IncomingMessage {
  return Object.assign(Readable.from(body ? [Buffer.from(body)] : []), { headers }) as unknown as IncomingMessage;
}

describe('the token check', () => {
  const url = (query = '') => new URL(`http://localhost/ws${query}`);
  it('lets everything through when no token is configured', () => {
    assert.equal(isAuthorized(request({}), url(), null, false), true);
  });
  it('wants the exact bearer token', () => {
    assert.equal(isAuthorized(request({ authorization: 'Bearer s3cret' }), url(), 's3cret', false), true);
    assert.equal(isAuthorized(request({ authorization: 'bearer s3cret' }), url(), 's3cret', false), true, 'the scheme is case-insensitive');
    assert.equal(isAuthorized(request({ authorization: 'Bearer s3cre' }), url(), 's3cret', false), false);
    assert.equal(isAuthorized(request({ authorization: 's3cret' }), url(), 's3cret', false), false, 'no scheme');
    assert.equal(isAuthorized(request({}), url(), 's3cret', false), false);
  });
  it('takes ?token= only where browsers need it', () => {
    assert.equal(isAuthorized(request({}), url('?token=s3cret'), 's3cret', true), true);
    assert.equal(isAuthorized(request({}), url('?token=s3cret'), 's3cret', false), false);
    assert.equal(isAuthorized(request({}), url('?token=wrong'), 's3cret', true), false);
  });
});

describe('request bodies', () => {
  it('parses JSON, treats an empty body as {} and refuses malformed JSON with 400', async () => {
    assert.deepEqual(await readJson(request({}, '{"a":1}'), 100), { a: 1 });
    assert.deepEqual(await readJson(request({}, ''), 100), {});
    await assert.rejects(readJson(request({}, '{"a":'), 100), (error: unknown) => error instanceof HttpError && error.status === 400);
  });
  it('refuses a body over the limit with 413, by its declared length or as it arrives', async () => {
    await assert.rejects(
      readJson(request({ 'content-length': '1000' }, '{}'), 100),
      (error: unknown) => error instanceof HttpError && error.status === 413,
    );
    await assert.rejects(
      readJson(request({}, 'x'.repeat(101)), 100),
      (error: unknown) => error instanceof HttpError && error.status === 413,
    );
  });
});

describe('the session registry', () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'opencode-env-registry-'));
  const runtime = createRuntime(loadConfig({ OPENCODE_ENV_DATA_DIR: dataDir, OPENCODE_ENV_SANDBOX: 'local' }), createLogger('silent'));
  after(() => rmSync(dataDir, { recursive: true, force: true }));

  it('caps live sessions across kinds, and frees a slot when one closes', async () => {
    const registry = new SessionRegistry(runtime, { maxSessions: 2, idleMs: 60_000, logger: createLogger('silent') });
    const a = registry.open('ws');
    registry.open('mcp');
    assert.throws(
      () => registry.open('openenv-rpc'),
      (error: unknown) => error instanceof CapacityError && error.activeSessions === 2 && error.maxSessions === 2,
    );
    let notified = 0;
    a.onClose(() => (notified += 1));
    await registry.close(a.id, 'test');
    await registry.close(a.id, 'again');
    assert.equal(notified, 1, 'closed once');
    assert.equal(registry.active, 1);
    registry.open('ws');
    await registry.closeAll('test over');
    assert.equal(registry.active, 0);
  });

  it('finds a session only under its own kind', async () => {
    const registry = new SessionRegistry(runtime, { maxSessions: 4, idleMs: 60_000, logger: createLogger('silent') });
    const mcp = registry.open('mcp');
    assert.equal(registry.get(mcp.id, 'mcp'), mcp);
    assert.equal(registry.get(mcp.id, 'openenv-rpc'), undefined, 'an OpenEnv client cannot use an MCP session id');
    await registry.closeAll('test over');
  });

  it('reaps sessions idle past the limit, never one with a call in flight', async () => {
    const registry = new SessionRegistry(runtime, { maxSessions: 4, idleMs: 300, logger: createLogger('silent') });
    const idle = registry.open('ws');
    const busy = registry.open('ws');
    const end = busy.begin();
    const deadline = Date.now() + 5000;
    while (registry.get(idle.id, 'ws') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(registry.get(idle.id, 'ws'), undefined, 'the idle session was closed');
    assert.equal(registry.get(busy.id, 'ws'), busy, 'the busy one was kept');
    end();
    while (registry.get(busy.id, 'ws') && Date.now() < deadline + 5000) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(registry.get(busy.id, 'ws'), undefined, 'and reaped once its call ended and it sat idle');
    await registry.closeAll('test over');
  });
});
