// Covers Semaphore (bounded concurrency, FIFO, cancellable waits) and SerialQueue (one task at a time, in order).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Semaphore } from '../../src/util/semaphore.js';
import { SerialQueue } from '../../src/util/serial-queue.js';

/** Lets every pending promise callback run. */
const settle = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/** A promise with its resolve and reject functions exposed. */
function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('Semaphore', () => {
  it('grants up to `limit` slots at once and queues the rest', async () => {
    const semaphore = new Semaphore(2);
    const first = await semaphore.acquire();
    await semaphore.acquire();
    assert.equal(semaphore.running, 2);
    assert.equal(semaphore.queued, 0);

    let thirdGranted = false;
    const third = semaphore.acquire().then((release) => {
      thirdGranted = true;
      return release;
    });
    await settle();
    assert.equal(thirdGranted, false, 'a third holder must wait');
    assert.equal(semaphore.queued, 1);

    first();
    const releaseThird = await third;
    assert.equal(thirdGranted, true);
    assert.equal(semaphore.running, 2, 'the freed slot went straight to the waiter');
    assert.equal(semaphore.queued, 0);
    releaseThird();
    assert.equal(semaphore.running, 1);
  });

  it('never has more than `limit` holders when many tasks compete', async () => {
    const limit = 3;
    const semaphore = new Semaphore(limit);
    let holders = 0;
    let most = 0;
    const task = async () => {
      const release = await semaphore.acquire();
      holders += 1;
      most = Math.max(most, holders);
      await Promise.resolve();
      await Promise.resolve();
      holders -= 1;
      release();
    };
    await Promise.all(Array.from({ length: 20 }, task));
    assert.equal(most, limit);
    assert.equal(semaphore.running, 0);
    assert.equal(semaphore.queued, 0);
  });

  it('grants waiters in the order they asked', async () => {
    const semaphore = new Semaphore(1);
    const holder = await semaphore.acquire();
    const order: number[] = [];
    const waiters = [1, 2, 3, 4, 5].map((n) =>
      semaphore.acquire().then((release) => {
        order.push(n);
        release();
      }),
    );
    assert.equal(semaphore.queued, 5);
    holder();
    await Promise.all(waiters);
    assert.deepEqual(order, [1, 2, 3, 4, 5]);
    assert.equal(semaphore.running, 0);
  });

  it('releasing twice frees one slot only', async () => {
    const semaphore = new Semaphore(1);
    const release = await semaphore.acquire();
    const waiting = [semaphore.acquire(), semaphore.acquire()];
    let granted = 0;
    for (const w of waiting) void w.then(() => (granted += 1));
    release();
    release();
    await settle();
    assert.equal(granted, 1, 'a second release of the same slot must not grant another waiter');
    assert.equal(semaphore.running, 1);
    assert.equal(semaphore.queued, 1);
  });

  it('releasing twice with no waiters does not drive `running` below zero', async () => {
    const semaphore = new Semaphore(2);
    const release = await semaphore.acquire();
    release();
    release();
    assert.equal(semaphore.running, 0);
    // Still only two slots.
    await semaphore.acquire();
    await semaphore.acquire();
    let extra = false;
    void semaphore.acquire().then(() => (extra = true));
    await settle();
    assert.equal(extra, false);
  });

  it('an aborted waiter leaves the queue and rejects; the next waiter still gets the slot', async () => {
    const semaphore = new Semaphore(1);
    const holder = await semaphore.acquire();
    const controller = new AbortController();
    const cancelled = semaphore.acquire(controller.signal);
    const next = semaphore.acquire();
    assert.equal(semaphore.queued, 2);

    controller.abort();
    await assert.rejects(cancelled, /cancelled/);
    assert.equal(semaphore.queued, 1);

    holder();
    const releaseNext = await next;
    assert.equal(semaphore.running, 1);
    releaseNext();
    assert.equal(semaphore.running, 0);
  });

  it('aborting after the slot was granted changes nothing', async () => {
    const semaphore = new Semaphore(1);
    const holder = await semaphore.acquire();
    const controller = new AbortController();
    const waiting = semaphore.acquire(controller.signal);
    holder();
    const release = await waiting;
    controller.abort();
    assert.equal(semaphore.running, 1);
    release();
    assert.equal(semaphore.running, 0);
  });

  it('acquire with an already-aborted signal rejects without taking a slot', async () => {
    const semaphore = new Semaphore(1);
    await assert.rejects(semaphore.acquire(AbortSignal.abort()), /cancelled/);
    assert.equal(semaphore.running, 0);
    assert.equal(semaphore.queued, 0);
  });
});

describe('SerialQueue', () => {
  it('runs tasks one at a time, in call order', async () => {
    const queue = new SerialQueue();
    const events: string[] = [];
    const gates = [deferred(), deferred(), deferred()];
    const results = gates.map((gate, i) =>
      queue.run(async () => {
        events.push(`start ${i}`);
        await gate.promise;
        events.push(`end ${i}`);
        return i * 10;
      }),
    );
    await settle();
    assert.deepEqual(events, ['start 0'], 'only the first task started');
    // Opening the gates in reverse order must not change the order the tasks run in.
    gates[2]!.resolve();
    gates[1]!.resolve();
    await settle();
    assert.deepEqual(events, ['start 0']);
    gates[0]!.resolve();
    assert.deepEqual(await Promise.all(results), [0, 10, 20]);
    assert.deepEqual(events, ['start 0', 'end 0', 'start 1', 'end 1', 'start 2', 'end 2']);
  });

  it('continues after a rejected task, and the rejection reaches only its caller', async () => {
    const queue = new SerialQueue();
    const order: string[] = [];
    const failing = queue.run(async () => {
      order.push('failing');
      throw new Error('boom');
    });
    const after = queue.run(async () => {
      order.push('after');
      return 'ok';
    });
    await assert.rejects(failing, /boom/);
    assert.equal(await after, 'ok');
    assert.deepEqual(order, ['failing', 'after']);
  });

  it('continues after a task that throws synchronously', async () => {
    const queue = new SerialQueue();
    const failing = queue.run(() => {
      throw new Error('sync boom');
    });
    await assert.rejects(failing, /sync boom/);
    assert.equal(await queue.run(async () => 'still running'), 'still running');
  });
});
