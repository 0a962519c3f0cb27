import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ObserverManager, type ErrorContext } from '../../src/index.js';
import { unhandledRejections, within } from '../support/deadline.js';

/** A hub whose errors are recorded, closed when the test ends. */
function hubFor(t: { after(fn: () => unknown): void }, options: ConstructorParameters<typeof ObserverManager>[0] = {}): { hub: ObserverManager; errors: unknown[] } {
  const errors: unknown[] = [];
  const hub = new ObserverManager({ sweepIntervalMs: 0, onError: (error) => void errors.push(error), ...options });
  t.after(() => hub.close());
  return { hub, errors };
}

const hostileReturns: [string, () => unknown][] = [
  ['a getter on `then` that throws', () => ({ get then(): never { throw new Error('then getter'); } })],
  ['a Proxy whose get trap throws', () => new Proxy({}, { get: () => { throw new Error('get trap'); } })],
  ['a revoked Proxy', () => { const { proxy, revoke } = Proxy.revocable({}, {}); revoke(); return proxy; }],
  ['a function whose `then` getter throws', () => Object.defineProperty(() => {}, 'then', { get: () => { throw new Error('fn then'); } })],
  ['a `then` that throws when called', () => ({ then: () => { throw new Error('then call'); } })],
];

for (const [what, make] of hostileReturns) {
  test(`delivery - a callback returning ${what} is reported as its own failure; later deliveries, drain() and close() go on`, async (t) => {
    const { hub, errors } = hubFor(t);
    const seen: number[] = [];
    hub.observe('k', () => make());
    hub.observe('k', (change) => void seen.push(change.newValue as number));
    hub.notify('k', 0, 1);
    await within(hub.drain(), 5000, 'drain after the first change');
    hub.notify('k', 1, 2);
    await within(hub.drain(), 5000, 'drain after the second change');
    assert.deepEqual(seen, [1, 2]);
    assert.equal(errors.length, 2, 'each hostile return is one reported failure');
    const stats = hub.getStats();
    assert.equal(stats.deliveryErrors, 2);
    assert.equal(stats.deliveries, 4);
    assert.equal(stats.pending, 0);
    await within(hub.close(), 5000, 'close');
  });
}

test('delivery - an async onError that rejects, and one that throws, leave no unhandled rejection and stop nothing', async (t) => {
  const rejections = unhandledRejections(t);
  for (const onError of [(): Promise<never> => Promise.reject(new Error('async onError')), (): never => { throw new Error('sync onError'); }]) {
    const hub = new ObserverManager({ sweepIntervalMs: 0, onError });
    hub.observe('k', () => { throw new Error('observer'); });
    const seen: number[] = [];
    hub.observe('k', (change) => void seen.push(change.newValue as number));
    hub.notify('k', 0, 1);
    await within(hub.drain(), 5000, 'drain');
    assert.deepEqual(seen, [1]);
    await within(hub.close(), 5000, 'close');
  }
  await rejections.settle();
  assert.deepEqual(rejections.seen, []);
});

test('onClose - an async onClose that rejects (directly, through a scope, at close) leaves no unhandled rejection, and the removal completes', async (t) => {
  const rejections = unhandledRejections(t);
  const { hub } = hubFor(t);
  const sub = hub.observe('k', () => {}, { onClose: () => Promise.reject(new Error('async onClose')) });
  assert.equal(sub.unsubscribe(), true);
  assert.equal(sub.active, false);
  assert.equal(hub.observerCount('k'), 0);
  const scope = hub.scope();
  scope.observe('s', () => {}, { onClose: () => Promise.reject(new Error('scoped onClose')) });
  assert.equal(scope.dispose(), 1);
  const gone = hub.observe('g', () => {}, { onClose: () => Promise.reject(new Error('rejected onClose')) });
  await within(hub.close(), 5000, 'close');
  assert.equal(gone.active, false);
  await rejections.settle();
  assert.deepEqual(rejections.seen, []);
});

test('coalesce - an equals that throws while merging a full queue is reported, the change kept, and the accounting exact', async (t) => {
  const contexts: ErrorContext[] = [];
  const errors: unknown[] = [];
  const hub = new ObserverManager({
    sweepIntervalMs: 0,
    // Throws only in the merge of the queued 1→2 with 2→3 (the merge compares 1 with 3), not in notify's own check.
    equals: (a, b) => {
      if (a === 1 && b === 3) throw new Error('equals');
      return Object.is(a, b);
    },
    onError: (error, context) => {
      errors.push(error);
      contexts.push(context);
    },
  });
  t.after(() => hub.close());
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let started!: () => void;
  const inFlight = new Promise<void>((resolve) => (started = resolve));
  const seen: [unknown, unknown][] = [];
  hub.observe('k', async (change) => {
    seen.push([change.oldValue, change.newValue]);
    if (change.newValue === 1) {
      started();
      await gate;
    }
  }, { queue: { limit: 1, overflow: 'coalesce' } });
  hub.notify('k', 0, 1);
  await within(inFlight, 5000, 'the first change in flight');
  hub.notify('k', 1, 2); // queued
  hub.notify('k', 2, 3); // the queue is full: merged into 1→2, and equals throws
  release();
  await within(hub.drain(), 5000, 'drain');
  assert.deepEqual(seen, [[0, 1], [1, 3]]);
  assert.equal(errors.length, 1);
  assert.equal(contexts[0]!.change.newValue, 3);
  const s = hub.getStats();
  assert.equal(s.queued, 0);
  assert.equal(s.coalesced, 1);
  assert.equal(s.deliveries + s.dropped + s.coalesced + s.cancelled, s.fanOut);
  assert.equal(s.pending, 0);
});

test('coalesce - an equals that removes the observer in the middle of a merge: the change is cancelled and the accounting stays exact', async (t) => {
  const holder: { sub?: { unsubscribe(): boolean } } = {};
  const hub = new ObserverManager({
    sweepIntervalMs: 0,
    equals: (a, b) => {
      if (a === 1 && b === 3) holder.sub?.unsubscribe(); // the merge of the queued 1→2 with 2→3 compares 1 with 3
      return Object.is(a, b);
    },
  });
  t.after(() => hub.close());
  let release!: () => void;
  let started!: () => void;
  const inFlight = new Promise<void>((resolve) => (started = resolve));
  holder.sub = hub.observe('k', (change) => {
    if (change.newValue !== 1) return undefined;
    started();
    return new Promise<void>((resolve) => (release = resolve));
  }, { queue: { limit: 1, overflow: 'coalesce' } });
  hub.notify('k', 0, 1);
  await within(inFlight, 5000, 'change 1 in flight');
  hub.notify('k', 1, 2);
  hub.notify('k', 2, 3);
  release();
  await within(hub.drain(), 5000, 'drain');
  const s = hub.getStats();
  assert.equal(s.queued, 0);
  assert.equal(s.pending, 0);
  assert.equal(s.deliveries + s.dropped + s.coalesced + s.cancelled, s.fanOut);
  assert.deepEqual([s.deliveries, s.cancelled], [1, 2]);
});

test('isAlive - a probe that removes its own observer and says true: the change is cancelled, no callback runs, no error', async (t) => {
  const { hub, errors } = hubFor(t);
  let calls = 0;
  const sub = hub.observe('k', () => void calls++, { isAlive: () => { sub.unsubscribe(); return true; } });
  hub.notify('k', 0, 1);
  await within(hub.drain(), 5000, 'drain');
  assert.equal(calls, 0);
  assert.deepEqual(errors, []);
  const s = hub.getStats();
  assert.deepEqual([s.deliveries, s.cancelled, s.deliveryErrors], [0, 1, 0]);
});

test('delivery - a thenable that settles twice, or throws after settling, counts once, as a promise would', async (t) => {
  const { hub, errors } = hubFor(t);
  const thenables = [
    { then: (resolve: () => void) => { resolve(); throw new Error('after resolve'); } },
    { then: (resolve: () => void, reject: (e: unknown) => void) => { resolve(); reject(new Error('after resolve')); } },
    { then: (_: unknown, reject: (e: unknown) => void) => { reject(new Error('first')); reject(new Error('second')); } },
  ];
  for (const [i, thenable] of thenables.entries()) hub.observe(`t${i}`, () => thenable);
  for (let i = 0; i < thenables.length; i++) hub.notify(`t${i}`, 0, 1);
  await within(hub.drain(), 5000, 'drain');
  assert.deepEqual(errors.map((e) => (e as Error).message), ['first']);
  assert.equal(hub.getStats().deliveryErrors, 1);
});

test('unsubscribe() - removal wins over a pending promise too: drain() and close() no longer wait for a removed observer', async (t) => {
  const hub = new ObserverManager({ sweepIntervalMs: 0, callbackTimeoutMs: Infinity });
  t.after(() => hub.close());
  let started!: () => void;
  const inFlight = new Promise<void>((resolve) => (started = resolve));
  const sub = hub.observe('k', () => {
    started();
    return new Promise<void>(() => {}); // never settles
  });
  hub.notify('k', 0, 1);
  await within(inFlight, 5000, 'the callback running');
  sub.unsubscribe();
  await within(hub.drain(), 5000, 'drain after the removal');
  await within(hub.close(), 5000, 'close');
});

test('delivery - a thenable settled from inside the dispatcher (by an equals merging its observer\'s queue) loses no change and keeps the order', async (t) => {
  let storedResolve: (() => void) | undefined;
  const hub = new ObserverManager({
    sweepIntervalMs: 0,
    // The merge of the queued 1→2 with 2→3 compares 1 with 3: it settles the observer's pending thenable right there.
    equals: (a, b) => {
      if (a === 1 && b === 3 && storedResolve !== undefined) {
        const resolve = storedResolve;
        storedResolve = undefined;
        resolve();
      }
      return Object.is(a, b);
    },
  });
  t.after(() => hub.close());
  const seen: string[] = [];
  let started!: () => void;
  const inFlight = new Promise<void>((resolve) => (started = resolve));
  hub.observe('k', (change) => {
    seen.push(`${String(change.oldValue)}→${String(change.newValue)}`);
    if (change.newValue !== 1) return undefined;
    started();
    return { then: (resolve: () => void) => void (storedResolve = resolve) };
  }, { queue: { limit: 1, overflow: 'coalesce' } });
  hub.notify('k', 0, 1);
  await within(inFlight, 5000, 'change 1 in flight');
  hub.notify('k', 1, 2);
  hub.notify('k', 2, 3);
  await within(hub.drain(), 5000, 'drain');
  hub.notify('k', 3, 4);
  await within(hub.drain(), 5000, 'drain');
  assert.deepEqual(seen, ['0→1', '1→3', '3→4']);
  const s = hub.getStats();
  assert.deepEqual([s.pending, s.queued], [0, 0]);
  assert.equal(s.deliveries + s.dropped + s.coalesced + s.cancelled, s.fanOut);
});

test('drain() - does not resolve while a callback runs, even when that callback removes the last observer anyone waited for', async (t) => {
  const hub = new ObserverManager({ sweepIntervalMs: 0, callbackTimeoutMs: 10_000 });
  t.after(() => hub.close());
  const events: string[] = [];
  const y = hub.observe('y', () => new Promise<void>(() => {}));
  let releaseFirst!: () => void;
  let started!: () => void;
  const xStarted = new Promise<void>((resolve) => (started = resolve));
  let releaseSecond!: () => void;
  hub.observe('x', (change) => {
    if (change.newValue === 1) {
      started();
      return new Promise<void>((resolve) => (releaseFirst = resolve));
    }
    y.unsubscribe(); // the observer drain() still waited for goes: drain() must wait for this callback's own work
    hub.notify('z', 0, 1);
    return new Promise<void>((resolve) => (releaseSecond = () => { events.push('second settled'); resolve(); }));
  });
  hub.observe('z', () => void events.push('z'));
  hub.notify('y', 0, 1);
  hub.notify('x', 0, 1);
  await within(xStarted, 5000, 'x in flight');
  hub.notify('x', 1, 2); // queued behind x's first promise
  const drained = hub.drain().then(() => void events.push('drained'));
  releaseFirst();
  await within(new Promise<void>((resolve) => setImmediate(resolve)), 5000, 'a turn of the loop');
  assert.deepEqual(events, ['z'], 'drain() waits for the second promise');
  releaseSecond();
  await within(drained, 5000, 'drain');
  assert.deepEqual(events, ['z', 'second settled', 'drained']);
  assert.equal(hub.getStats().pending, 0);
});
