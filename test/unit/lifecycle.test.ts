// Covers CleanupScope and Lifecycle (without shutdown, which exits): cleanup order, once-only, failures, and child scopes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CleanupScope, Lifecycle } from '../../src/lifecycle.js';
import { createLogger } from '../../src/log.js';

const logger = createLogger('silent');

/** A cleanup that appends `name` to `log` when it runs. */
const recorder = (log: string[], name: string) => async () => {
  log.push(name);
};

describe('CleanupScope', () => {
  it('runs cleanups in reverse order of registration', async () => {
    const scope = new CleanupScope('test', logger);
    const log: string[] = [];
    for (const name of ['server', 'proxy', 'sandbox']) scope.onShutdown(name, recorder(log, name));
    await scope.close();
    assert.deepEqual(log, ['sandbox', 'proxy', 'server']);
  });

  it('runs each cleanup once, however often it is closed, even concurrently', async () => {
    const scope = new CleanupScope('test', logger);
    const log: string[] = [];
    scope.onShutdown('a', recorder(log, 'a'));
    const first = scope.close();
    const second = scope.close();
    assert.equal(first, second, 'a second close returns the same promise');
    await Promise.all([first, second, scope.close()]);
    await scope.close();
    assert.deepEqual(log, ['a']);
    assert.equal(scope.size, 0);
  });

  it('waits for each cleanup before starting the next', async () => {
    const scope = new CleanupScope('test', logger);
    const log: string[] = [];
    scope.onShutdown('first registered', async () => {
      log.push('first start');
    });
    scope.onShutdown('last registered', async () => {
      log.push('last start');
      await new Promise((resolve) => setTimeout(resolve, 0));
      log.push('last end');
    });
    await scope.close();
    assert.deepEqual(log, ['last start', 'last end', 'first start']);
  });

  it('a failing cleanup does not stop the rest, and close still resolves', async () => {
    const scope = new CleanupScope('test', logger);
    const log: string[] = [];
    scope.onShutdown('a', recorder(log, 'a'));
    scope.onShutdown('throws', async () => {
      throw new Error('cleanup failed');
    });
    scope.onShutdown('c', recorder(log, 'c'));
    await scope.close();
    assert.deepEqual(log, ['c', 'a']);
  });

  it('onShutdown returns a function that unregisters the cleanup without running it', async () => {
    const scope = new CleanupScope('test', logger);
    const log: string[] = [];
    scope.onShutdown('kept', recorder(log, 'kept'));
    const unregister = scope.onShutdown('dropped', recorder(log, 'dropped'));
    assert.equal(scope.size, 2);
    unregister();
    assert.equal(scope.size, 1);
    assert.deepEqual(log, [], 'unregistering runs nothing');
    unregister();
    assert.equal(scope.size, 1, 'unregistering twice is harmless');
    await scope.close();
    assert.deepEqual(log, ['kept']);
  });
});

describe('child scopes', () => {
  it("a child's cleanups run when the parent closes, in the parent's reverse order", async () => {
    const parent = new CleanupScope('parent', logger);
    const log: string[] = [];
    parent.onShutdown('before child', recorder(log, 'before child'));
    const child = parent.openScope('child');
    child.onShutdown('child 1', recorder(log, 'child 1'));
    child.onShutdown('child 2', recorder(log, 'child 2'));
    parent.onShutdown('after child', recorder(log, 'after child'));
    await parent.close();
    assert.deepEqual(log, ['after child', 'child 2', 'child 1', 'before child']);
  });

  it('a child closed first runs its cleanups then, not again with the parent, and leaves nothing in the parent', async () => {
    const parent = new CleanupScope('parent', logger);
    const log: string[] = [];
    parent.onShutdown('parent', recorder(log, 'parent'));
    const baseline = parent.size;
    const child = parent.openScope('child');
    child.onShutdown('child', recorder(log, 'child'));
    assert.equal(parent.size, baseline + 1, 'an open child is registered in its parent');
    await child.close();
    assert.deepEqual(log, ['child']);
    assert.equal(parent.size, baseline);
    await parent.close();
    assert.deepEqual(log, ['child', 'parent']);
  });

  it('grandchildren close with their grandparent', async () => {
    const root = new Lifecycle(logger);
    const log: string[] = [];
    root.openScope('session').openScope('call').onShutdown('deep', recorder(log, 'deep'));
    await root.close();
    assert.deepEqual(log, ['deep']);
  });

  it('opening and closing 10,000 scopes leaves the parent at its baseline size', async () => {
    const lifecycle = new Lifecycle(logger);
    lifecycle.onShutdown('sandboxes', async () => {});
    const baseline = lifecycle.size;
    let ran = 0;
    const sessions = 10_000;
    for (let i = 0; i < sessions; i++) {
      const session = lifecycle.openScope(`session ${i}`);
      session.onShutdown('episode', async () => {
        ran += 1;
      });
      await session.close();
    }
    assert.equal(ran, sessions);
    assert.equal(lifecycle.size, baseline);
  });
});

describe('Lifecycle', () => {
  it('is the process scope', () => {
    const lifecycle = new Lifecycle(logger);
    assert.equal(lifecycle.name, 'process');
    assert.ok(lifecycle instanceof CleanupScope);
    assert.equal(lifecycle.size, 0);
  });
});
