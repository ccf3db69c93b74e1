// What /mcp decides before handling a request: MCP Streamable HTTP or OpenEnv JSON-RPC, and DNS-rebinding refusals.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  isInitializeMessage,
  mcpEndpointProtocol,
  rebindingRefusal,
  type McpRequestFacts,
} from '../../src/transports/http/mcp-dispatch.js';

const MCP_ACCEPT = 'application/json, text/event-stream';
const initialize = { jsonrpc: '2.0', id: 1, method: 'initialize', params: {} };
const post = (facts: Partial<McpRequestFacts>): McpRequestFacts => ({
  method: 'POST',
  sessionId: undefined,
  accept: undefined,
  body: undefined,
  ...facts,
});

describe('which protocol a /mcp request speaks', () => {
  it('gives OpenEnv what its httpx client sends: plain JSON, no session header, no event-stream', () => {
    for (const body of [
      {},
      { jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} },
      { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'execute_python', arguments: {}, session_id: 's' } },
      { jsonrpc: '2.0', id: 3, method: 'openenv/session/create', params: {} },
      [{ jsonrpc: '2.0', id: 1, method: 'tools/list' }],
      undefined, // not JSON at all
    ]) {
      for (const accept of [undefined, '*/*', 'application/json']) {
        assert.equal(mcpEndpointProtocol(post({ body, accept })), 'openenv-jsonrpc', `${JSON.stringify(body)} with Accept ${accept}`);
      }
    }
  });

  it('gives MCP an initialize, a session header, an event-stream Accept, and every GET and DELETE', () => {
    assert.equal(mcpEndpointProtocol(post({ body: initialize, accept: MCP_ACCEPT })), 'streamable-http');
    assert.equal(mcpEndpointProtocol(post({ body: initialize })), 'streamable-http', 'the transport explains the missing Accept (406)');
    assert.equal(mcpEndpointProtocol(post({ body: [initialize] })), 'streamable-http', 'a batch with an initialize');
    assert.equal(mcpEndpointProtocol(post({ body: { method: 'tools/list' }, sessionId: 'abc' })), 'streamable-http');
    assert.equal(mcpEndpointProtocol(post({ body: {}, accept: 'application/json, Text/Event-Stream' })), 'streamable-http');
    assert.equal(mcpEndpointProtocol(post({ body: undefined, accept: MCP_ACCEPT })), 'streamable-http', 'bad JSON from an MCP client');
    assert.equal(
      mcpEndpointProtocol({ method: 'GET', sessionId: undefined, accept: 'text/event-stream', body: undefined }),
      'streamable-http',
    );
    assert.equal(mcpEndpointProtocol({ method: 'DELETE', sessionId: 'abc', accept: undefined, body: undefined }), 'streamable-http');
  });

  it('does not take an empty session header for a session', () => {
    assert.equal(mcpEndpointProtocol(post({ body: { method: 'tools/list' }, sessionId: '' })), 'openenv-jsonrpc');
  });

  it('finds initialize alone or in a batch, and nothing else', () => {
    assert.equal(isInitializeMessage(initialize), true);
    assert.equal(isInitializeMessage([{ method: 'ping' }, initialize]), true);
    for (const body of [null, 'initialize', 7, {}, { method: 'initialized' }, [null]])
      assert.equal(isInitializeMessage(body), false, JSON.stringify(body));
  });
});

describe('DNS-rebinding refusals', () => {
  const check = (host: string | undefined, origin: string | undefined, bound = '127.0.0.1') => rebindingRefusal({ host, origin }, bound);

  it('accepts loopback names on a loopback bind, with or without a port and a same-host Origin', () => {
    for (const host of ['127.0.0.1:8000', 'localhost:8000', 'LOCALHOST', '[::1]:8000', '127.0.0.1']) {
      assert.equal(check(host, undefined), null, host);
      assert.equal(check(host, `http://${host}`), null, `${host} with its own Origin`);
    }
    assert.equal(check('localhost:8000', 'http://127.0.0.1:5173'), null, 'another local page');
  });

  it('refuses a foreign Host, a foreign or opaque Origin, and junk', () => {
    assert.match(check('evil.example:8000', undefined)!, /Host/);
    assert.match(check('evil.example', 'http://evil.example')!, /Host/);
    assert.match(check('127.0.0.1:8000', 'http://evil.example')!, /Origin/);
    assert.match(check('127.0.0.1:8000', 'null')!, /Origin/, 'sandboxed frames and file:// pages send "null"');
    assert.match(check(undefined, undefined)!, /Host header is required/);
    assert.match(check('127.0.0.1:8000/path', undefined)!, /Host/);
    assert.match(check('user@127.0.0.1', undefined)!, /Host/);
    assert.match(check('127.0.0.1.evil.example', undefined)!, /Host/);
  });

  it('accepts the configured HOST too', () => {
    assert.equal(check('10.1.2.3:8000', undefined, '10.1.2.3'), null);
    assert.equal(check('[fd00::1]:8000', undefined, '[fd00::1]'), null);
    assert.equal(check('env.internal', 'http://env.internal', 'env.internal'), null);
    assert.match(check('10.1.2.4:8000', undefined, '10.1.2.3')!, /Host/);
  });

  it('on a wildcard bind (Docker) takes any Host but still wants a same-origin Origin', () => {
    for (const bound of ['0.0.0.0', '::']) {
      assert.equal(check('my-space.hf.space', undefined, bound), null);
      assert.equal(check(undefined, undefined, bound), null);
      assert.equal(check('my-space.hf.space', 'https://my-space.hf.space', bound), null);
      assert.match(check('my-space.hf.space', 'https://evil.example', bound)!, /Origin/);
      assert.match(check('localhost:8000', 'http://127.0.0.1:8000', bound)!, /Origin/, 'on a wildcard bind only the same origin');
    }
  });
});
