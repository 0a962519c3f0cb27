import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { setImmediate as nextTask } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { ObserverManager, type CloseReason } from '../../src/index.js';
import { exitOf } from '../support/deadline.js';
import { collectUntil, gc, NO_GC } from '../support/gc.js';

function createHub(t: { after: (fn: () => unknown) => void }, options: ConstructorParameters<typeof ObserverManager>[0] = {}): ObserverManager {
  const hub = new ObserverManager({ sweepIntervalMs: 0, ...options });
  t.after(() => hub.close());
  return hub;
}

/** Registers an observer whose owner becomes garbage as soon as this returns. */
function observeWithDroppedOwner(hub: ObserverManager, key: string, reasons: CloseReason[]): void {
  const owner = { name: 'component' };
  hub.observe(key, () => {}, { owner, onClose: (r) => void reasons.push(r) });
}

test('owner - an observer goes with reason "owner-collected" once its owner is garbage-collected', { skip: gc === undefined && NO_GC }, async (t) => {
  const hub = createHub(t);
  const reasons: CloseReason[] = [];
  observeWithDroppedOwner(hub, 'owned/1', reasons);
  assert.equal(hub.observerCount('owned/1'), 1);
  assert.ok(await collectUntil(() => reasons.length > 0), 'the finalizer removed the observer');
  assert.deepEqual(reasons, ['owner-collected']);
  assert.deepEqual(hub.keys(), []);
  assert.equal(hub.getStats().deadObserversRemoved, 1);
});

test('sweep() - removes observers whose owner was collected, before any finalizer runs', { skip: gc === undefined && NO_GC }, async (t) => {
  const hub = createHub(t);
  const reasons: CloseReason[] = [];
  for (let i = 0; i < 10; i++) observeWithDroppedOwner(hub, 'owned/swept', reasons);
  const kept = { still: 'here' };
  hub.observe('owned/swept', () => {}, { owner: kept });
  await nextTask(); // a WeakRef keeps its target alive until the job that made it ends
  // From here to the sweep, one synchronous turn: a finalizer runs in a task of its own, so none can run in between.
  assert.equal(hub.observerCount('owned/swept'), 11, 'no owner collected yet');
  gc!(); // the ten owners go, their WeakRefs are cleared, and their finalizers wait for a later task
  assert.equal(hub.sweep(), 10);
  assert.deepEqual(reasons, Array.from({ length: 10 }, () => 'owner-collected'));
  assert.equal(hub.observerCount('owned/swept'), 1);
  let stats = hub.getStats();
  assert.equal(stats.cleanupRuns, 1);
  assert.equal(stats.deadObserversRemoved, 10);
  await collectUntil(() => false, 3); // the finalizers run now, and find nothing left to remove
  stats = hub.getStats();
  assert.equal(stats.deadObserversRemoved, 10, 'each observer counted once');
  assert.equal(reasons.length, 10, 'onClose called once each');
  assert.ok(kept);
});

test('sweep - the periodic sweep removes observers whose owner was collected, before any finalizer runs', { skip: gc === undefined && NO_GC }, async (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  const hub = createHub(t, { sweepIntervalMs: 1000 });
  const reasons: CloseReason[] = [];
  observeWithDroppedOwner(hub, 'owned/periodic', reasons);
  await nextTask(); // a WeakRef keeps its target alive until the job that made it ends
  // One synchronous turn from here: no finalizer can run before the timer's sweep.
  assert.equal(hub.observerCount('owned/periodic'), 1, 'the owner not collected yet');
  gc!();
  t.mock.timers.tick(999);
  assert.deepEqual(reasons, [], 'no sweep before the interval');
  t.mock.timers.tick(1);
  assert.deepEqual(reasons, ['owner-collected']);
  assert.equal(hub.observerCount('owned/periodic'), 0);
  const stats = hub.getStats();
  assert.equal(stats.cleanupRuns, 1);
  assert.equal(stats.deadObserversRemoved, 1);
});

test('watch() - an iterator that is never read holds nothing once it is collected', { skip: gc === undefined && NO_GC }, async (t) => {
  const hub = createHub(t);
  (() => {
    hub.watch('watched/unread');
  })();
  hub.notify('watched/unread', 0, 1);
  await hub.drain();
  assert.ok(await collectUntil(() => hub.observerCount('watched/unread') === 0));
  const stats = hub.getStats();
  assert.equal(stats.deliveries + stats.dropped + stats.coalesced + stats.cancelled, stats.fanOut);
});

test('sweep - the periodic sweep runs every sweepIntervalMs and removes observers whose isAlive says false', (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  const hub = createHub(t, { sweepIntervalMs: 1000 });
  let alive = true;
  const reasons: CloseReason[] = [];
  hub.observe('probed', () => {}, { isAlive: () => alive, onClose: (r) => void reasons.push(r) });
  t.mock.timers.tick(1000);
  assert.equal(hub.getStats().cleanupRuns, 1);
  assert.equal(hub.observerCount('probed'), 1);
  alive = false;
  t.mock.timers.tick(999);
  assert.equal(hub.observerCount('probed'), 1, 'no sweep before the interval');
  t.mock.timers.tick(1);
  assert.equal(hub.getStats().cleanupRuns, 2);
  assert.equal(hub.observerCount('probed'), 0);
  assert.deepEqual(reasons, ['dead']);
  assert.equal(hub.getStats().deadObserversRemoved, 1);
});

test('sweep - the sweep timer never keeps a process alive', async () => {
  const entry = fileURLToPath(new URL('../../src/index.ts', import.meta.url));
  const script = `
    const { ObserverManager } = await import(${JSON.stringify(entry)});
    const hub = new ObserverManager({ sweepIntervalMs: 5 });
    hub.observe('k', () => {}, { isAlive: () => true });
    hub.notify('k', 0, 1);
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: 'inherit' });
  assert.equal(await exitOf(child, 20_000), 0, 'the process ended on its own with the hub still open');
});

test('observe() - 10 000 observers on one key sharing one signal raise no process warning', async (t) => {
  const warnings: Error[] = [];
  const onWarning = (warning: Error): void => void warnings.push(warning);
  process.on('warning', onWarning);
  t.after(() => process.off('warning', onWarning));
  const hub = createHub(t);
  const controller = new AbortController();
  let calls = 0;
  for (let i = 0; i < 10_000; i++) hub.observe('crowded', () => void calls++, { signal: controller.signal });
  for (let i = 0; i < 10_000; i++) hub.observe('crowded', () => void calls++, { signal: new AbortController().signal });
  hub.notify('crowded', 0, 1);
  await hub.drain();
  controller.abort();
  await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on a later tick
  assert.equal(calls, 20_000);
  assert.equal(hub.observerCount('crowded'), 10_000);
  assert.deepEqual(warnings.map((w) => `${w.name}: ${w.message}`), []);
});

test('sweep - a hub dropped without close() is not kept alive by its sweep timer', { skip: gc === undefined && NO_GC }, async () => {
  let collected = false;
  const registry = new FinalizationRegistry(() => (collected = true));
  (() => {
    const hub = new ObserverManager({ sweepIntervalMs: 1000 });
    hub.observe('dropped', () => {}, { isAlive: () => true });
    registry.register(hub, 'hub');
  })();
  assert.ok(await collectUntil(() => collected), 'the hub was garbage-collected');
});
