// How `opencode-env gc` judges a sandbox's server instance (src/sandbox/e2b/gc.ts), on a made-up host.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { judgeInstance, type HostView } from '../../src/sandbox/e2b/gc.js';

const STARTED = '2026-11-24T03:00:00.000Z';

function host(overrides: Partial<HostView> = {}): HostView {
  return {
    hostname: 'here',
    pidExists: (pid) => pid === 42,
    processStartedAt: () => Date.parse(STARTED) - 60_000,
    instanceRecord: (id) => (id === 'here:42:aa' ? { instanceId: 'here:42:aa', pid: 42, startedAt: STARTED } : null),
    ...overrides,
  };
}

const tags = (instance: string, extra: Record<string, string> = {}) => ({ app: 'opencode-env', serverInstance: instance, ...extra });

describe('judgeInstance', () => {
  it('alive: the pid runs, and its record names the instance', () => {
    assert.deepEqual(judgeInstance(tags('here:42:aa', { serverHost: 'here', serverPid: '42' }), host()), {
      state: 'alive',
      reason: 'alive',
    });
  });

  it('gone: no process with the pid', () => {
    assert.equal(judgeInstance(tags('here:7:bb', { serverHost: 'here', serverPid: '7' }), host()).state, 'gone');
  });

  it('gone: the pid runs but there is no record for the instance (a reused pid)', () => {
    const verdict = judgeInstance(tags('here:42:cc', { serverHost: 'here', serverPid: '42' }), host());
    assert.equal(verdict.state, 'gone');
    assert.match(verdict.reason, /reused/);
  });

  it('gone: the record names another instance or pid', () => {
    const other = host({ instanceRecord: () => ({ instanceId: 'here:42:zz', pid: 42, startedAt: STARTED }) });
    assert.equal(judgeInstance(tags('here:42:aa'), other).state, 'gone');
  });

  it('gone: the record stayed (a crash) and the process with the pid started after it', () => {
    const later = host({ processStartedAt: () => Date.parse(STARTED) + 3_600_000 });
    const verdict = judgeInstance(tags('here:42:aa'), later);
    assert.equal(verdict.state, 'gone');
    assert.match(verdict.reason, /started after the record/);
  });

  it('alive when the start time cannot be read', () => {
    assert.equal(judgeInstance(tags('here:42:aa'), host({ processStartedAt: () => null })).state, 'alive');
  });

  it('unknown: another host, or no server tags; host and pid fall back to the instance id', () => {
    assert.deepEqual(judgeInstance(tags('far:42:aa', { serverHost: 'far', serverPid: '42' }), host()), {
      state: 'unknown',
      reason: 'unknown (host far)',
    });
    assert.equal(judgeInstance(tags('far:1:aa'), host()).reason, 'unknown (host far)', 'the host parsed from the instance id');
    assert.equal(judgeInstance(tags('here:42:aa'), host()).state, 'alive', 'host and pid parsed from the instance id');
    assert.equal(judgeInstance({ app: 'opencode-env' }, host()).state, 'unknown');
    assert.equal(judgeInstance(tags('garbage'), host()).state, 'unknown');
  });
});
