import assert from 'node:assert/strict';
import diagnostics_channel from 'node:diagnostics_channel';
import { test } from 'node:test';
import { ObserverManager } from '../../src/index.js';
import { countdown } from '../support/deadline.js';

function createHub(t: { after: (fn: () => unknown) => void }, options: ConstructorParameters<typeof ObserverManager>[0] = {}): ObserverManager {
  const hub = new ObserverManager({ sweepIntervalMs: 0, onError: () => {}, ...options });
  t.after(() => hub.close());
  return hub;
}

test('getStats() - counts observers, notifications, deliveries and errors', async (t) => {
  const hub = createHub(t);
  const a = hub.observe('s/a', () => {});
  hub.observe('s/a', () => { throw new Error('x'); });
  hub.observe('s/b', () => {});
  hub.notify('s/a', 0, 1);
  hub.notify('s/a', 1, 1);
  hub.notify('s/c', 0, 1);
  a.unsubscribe();
  await hub.drain();
  const stats = hub.getStats();
  assert.equal(stats.observersAdded, 3);
  assert.equal(stats.observersRemoved, 1);
  assert.equal(stats.activeObservers, 2);
  assert.equal(stats.keys, 2);
  assert.equal(stats.notifications, 2);
  assert.equal(stats.notificationsSkipped, 1);
  assert.equal(stats.fanOut, 2);
  assert.equal(stats.deliveries, 1);
  assert.equal(stats.cancelled, 1);
  assert.equal(stats.deliveryErrors, 1);
  assert.equal(stats.pending, 0);
  assert.equal(stats.queued, 0);
  assert.ok(stats.uptimeMs >= 0);
});

test('getStats() - reports dispatch latency percentiles from sampled changes', async (t) => {
  const hub = createHub(t);
  hub.observe('lat', () => {});
  for (let i = 0; i < 100; i++) hub.notify('lat', i, i + 1);
  await hub.drain();
  const { latency } = hub.getStats();
  assert.ok(latency.samples >= 100 / 16 - 1);
  assert.ok(latency.p50Ms >= 0 && latency.p50Ms <= latency.p90Ms && latency.p90Ms <= latency.p99Ms && latency.p99Ms <= latency.maxMs);
});

test('inspect() - shows each observer with label, age, liveness and its own counters', async (t) => {
  const hub = createHub(t);
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const slow = hub.observe('i/k', () => gate, { label: 'slow', queue: { limit: 1, overflow: 'drop-oldest' } });
  const failing = hub.observe('i/k', () => { throw new Error('no'); }, { label: 'failing', isAlive: () => true });
  const witness = countdown(4, 'the pattern observer, called last, to receive the 4 changes');
  const pattern = hub.observePattern('i/*', () => witness.tick());
  for (let i = 0; i < 4; i++) hub.notify('i/k', i, i + 1);
  await witness.wait(); // every change has been dispatched to every observer
  const view = hub.inspect('i/k');
  assert.equal(view.key, 'i/k');
  assert.equal(view.observerCount, 3);
  assert.deepEqual(view.observers.map((o) => o.id), [slow.id, failing.id, pattern.id]);
  const [s, f, p] = view.observers;
  assert.equal(p!.delivered, 4);
  assert.deepEqual({ label: s!.label, delivered: s!.delivered, queued: s!.queued, dropped: s!.dropped, alive: s!.alive }, { label: 'slow', delivered: 1, queued: 1, dropped: 2, alive: true });
  assert.deepEqual({ label: f!.label, delivered: f!.delivered, errors: f!.errors }, { label: 'failing', delivered: 4, errors: 4 });
  assert.equal(p!.pattern, 'i/*');
  assert.ok(s!.ageMs >= 0);
  release();
  await hub.drain();
});

test('diagnostics - publishes notify, observer and error events to subscribers only', async (t) => {
  const events: [string, unknown][] = [];
  const listeners = (['notify', 'observer', 'error'] as const).map((name) => {
    const listener = (message: unknown): void => void events.push([name, message]);
    diagnostics_channel.subscribe(`herald:${name}`, listener);
    return () => diagnostics_channel.unsubscribe(`herald:${name}`, listener);
  });
  t.after(() => listeners.forEach((off) => off()));
  const hub = createHub(t);
  const sub = hub.observe('d/k', () => { throw new Error('bad'); });
  hub.notify('d/k', 0, 1);
  hub.notify('d/none', 0, 1);
  await hub.drain();
  sub.unsubscribe();
  const mine = events.filter(([, m]) => (m as { hub: unknown }).hub === hub);
  assert.deepEqual(mine.map(([name, m]) => `${name}:${(m as { event?: string }).event ?? ''}`), [
    'observer:added', 'notify:', 'notify:', 'error:', 'observer:removed',
  ]);
  const notify = mine[1]![1] as { change: { key: string }; observers: number };
  assert.equal(notify.change.key, 'd/k');
  assert.equal(notify.observers, 1);
  assert.equal((mine[4]![1] as { reason: string }).reason, 'unsubscribed');
});

test('inspect() - counts each observer\'s deliveries on every path: plain, queued, probed and removed neighbours', async (t) => {
  const hub = createHub(t);
  let release!: () => void;
  let gate = new Promise<void>((resolve) => (release = resolve));
  const plain = hub.observe('d/k', () => {});
  const late = hub.observe('d/k', () => {}, { label: 'late' });
  hub.observe('d/k', () => gate, { label: 'slow' });
  const witness = countdown(3, 'the probed observer, registered last, to receive the 3 changes');
  hub.observe('d/k', () => witness.tick(), { isAlive: () => true, label: 'probed' });
  hub.notify('d/k', 0, 1);
  late.unsubscribe(); // before delivery: cancelled, not delivered
  hub.notify('d/k', 1, 2);
  hub.notify('d/k', 2, 3); // the slow one has 1 in flight and 2 queued
  await witness.wait(); // every change has been dispatched to every observer
  const during = Object.fromEntries(hub.inspect('d/k').observers.map((o) => [o.label ?? o.id, o.delivered]));
  assert.deepEqual(during, { [plain.id]: 3, slow: 1, probed: 3 });
  release();
  gate = Promise.resolve();
  await hub.drain();
  hub.notify('d/k', 3, 4);
  await hub.drain();
  const after = Object.fromEntries(hub.inspect('d/k').observers.map((o) => [o.label ?? o.id, o.delivered]));
  assert.deepEqual(after, { [plain.id]: 4, slow: 4, probed: 4 });
  const stats = hub.getStats();
  assert.equal(stats.deliveries, 12);
  assert.equal(stats.cancelled, 1);
});
