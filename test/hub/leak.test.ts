import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ObserverManager } from '../../src/index.js';
import { collectUntil, gc, NO_GC, settledHeap } from '../support/gc.js';

const MB = 1024 * 1024;

test('leak - 1 000 000 observe/unsubscribe cycles on fresh keys leave the heap where it started', { skip: gc === undefined && NO_GC }, async () => {
  const hub = new ObserverManager({ sweepIntervalMs: 0 });
  const callback = (): void => {};
  for (let i = 0; i < 10_000; i++) hub.observe(`warm/${i}`, callback).unsubscribe();
  const before = await settledHeap();
  for (let i = 0; i < 1_000_000; i++) {
    const sub = hub.observe(`leak/${i}`, callback);
    if (i % 1000 === 0) hub.notify(`leak/${i}`, 0, 1);
    sub.unsubscribe();
  }
  await hub.drain();
  const after = await settledHeap();
  assert.deepEqual(hub.keys(), []);
  assert.ok(after - before < MB, `heap grew by ${((after - before) / 1024).toFixed(1)} KiB`);
  await hub.close();
});

test('leak - 100 000 observers whose owners are dropped without unsubscribing leave nothing behind', { skip: gc === undefined && NO_GC }, async () => {
  const hub = new ObserverManager({ sweepIntervalMs: 0 });
  const before = await settledHeap();
  (() => {
    for (let i = 0; i < 100_000; i++) {
      const owner = { component: i };
      hub.observe(`owned/${i % 1000}`, () => {}, { owner });
    }
  })();
  assert.equal(hub.observerCount(), 100_000);
  assert.ok(await collectUntil(() => hub.observerCount() === 0), `${hub.observerCount()} observers outlived their owners`);
  const after = await settledHeap();
  assert.deepEqual(hub.keys(), []);
  assert.equal(hub.getStats().deadObserversRemoved, 100_000);
  assert.ok(after - before < MB, `heap grew by ${((after - before) / 1024).toFixed(1)} KiB`);
  await hub.close();
});
