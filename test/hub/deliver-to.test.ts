import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ObserverManager, type Change, type CloseReason } from '../../src/index.js';
import { within } from '../support/deadline.js';
import { holdsOnFirst } from '../support/held.js';

function hubFor(t: { after(fn: () => unknown): void }): { hub: ObserverManager; errors: unknown[] } {
  const errors: unknown[] = [];
  const hub = new ObserverManager({ sweepIntervalMs: 0, onError: (error) => void errors.push(error) });
  t.after(() => hub.close());
  return { hub, errors };
}

const current = (key: string, value: unknown): Change => ({ key, oldValue: undefined, newValue: value, meta: { current: true }, seq: 0, at: 0 });

test('deliverTo() - hands changes outside the queue bound: a watcher with limit 2 and "disconnect" gets all 5 and stays', async (t) => {
  const { hub, errors } = hubFor(t);
  const seen: unknown[] = [];
  const closed: CloseReason[] = [];
  const sub = hub.observe('k', (change) => void seen.push(change.newValue), { queue: { limit: 2, overflow: 'disconnect' }, onClose: (reason) => void closed.push(reason) });
  for (let i = 0; i < 5; i++) assert.equal(hub.deliverTo(sub, current('k', i)), true);
  await within(hub.drain(), 5000, 'drain');
  assert.deepEqual(seen, [0, 1, 2, 3, 4]);
  assert.deepEqual(closed, []);
  assert.equal(sub.active, true);
  assert.deepEqual(errors, []);
  const s = hub.getStats();
  assert.equal(s.queued, 0);
  assert.equal(s.deliveries + s.dropped + s.coalesced + s.cancelled, s.fanOut);
});

test('deliverTo() - comes ahead of every change queued for the observer or not yet dispatched to it, in the order handed', async (t) => {
  const { hub } = hubFor(t);
  const { sub, seen, inFlight, release } = holdsOnFirst(hub, 'k');
  hub.notify('k', 0, 1);
  await inFlight();
  hub.notify('k', 1, 2); // queued behind 1 once dispatched
  hub.deliverTo(sub, current('k', 'X'));
  hub.deliverTo(sub, current('k', 'Y'));
  hub.notify('k', 2, 3);
  release();
  await within(hub.drain(), 5000, 'drain');
  assert.deepEqual(seen, [1, 'X', 'Y', 2, 3]);
});

test('deliverTo() - refuses a change it cannot take, a handle that only inherits from one, and counts nothing for them', (t) => {
  const { hub } = hubFor(t);
  const sub = hub.observe('k', () => {});
  const throwing = new Proxy({}, { get: () => { throw new Error('trap'); }, getPrototypeOf: () => { throw new Error('trap'); } });
  const getterKey = Object.defineProperty({ meta: {} }, 'key', { get: () => { throw new Error('getter'); }, enumerable: true });
  for (const [i, bad] of [
    null, 'k', [], throwing, getterKey, { key: '' }, { key: 42 }, { key: 'k', meta: new Map() }, { key: 'k', meta: [] },
    { key: 'k', seq: -1 }, { key: 'k', seq: 1.5 }, { key: 'k', at: NaN }, Object.freeze({ key: 'k', meta: new Map() }),
  ].entries()) {
    assert.throws(() => hub.deliverTo(sub, bad as never), { code: 'HERALD_INVALID_ARGUMENT' }, `bad change number ${i}`);
  }
  assert.throws(() => hub.deliverTo(Object.create(sub) as never, current('k', 1)), { code: 'HERALD_INVALID_ARGUMENT' });
  assert.throws(() => hub.deliverTo({ id: sub.id, key: 'k', active: true } as never, current('k', 1)), { code: 'HERALD_INVALID_ARGUMENT' });
  assert.equal(hub.getStats().fanOut, 0);
});

test('deliverTo() - what the observer receives is a frozen copy with a frozen plain meta, seq 0 and at now unless given', async (t) => {
  const { hub } = hubFor(t);
  const received: Change[] = [];
  const sub = hub.observe('k', (change) => void received.push(change));
  const meta = { by: 'me' };
  const before = Date.now();
  hub.deliverTo(sub, Object.freeze({ key: 'k', oldValue: 1, newValue: 2, meta }) as never);
  await within(hub.drain(), 5000, 'drain');
  const [change] = received;
  assert.ok(Object.isFrozen(change) && Object.isFrozen(change!.meta));
  assert.notEqual(change!.meta, meta);
  assert.deepEqual({ ...change!.meta }, meta);
  assert.equal(change!.seq, 0);
  assert.ok(change!.at >= before);
  assert.equal(Object.isFrozen(meta), false, "the caller's meta is not frozen under it");
});

test('deliverTo() - on a removed observer returns false and delivers nothing; on a closed hub throws HERALD_CLOSED', async (t) => {
  const { hub } = hubFor(t);
  const sub = hub.observe('k', () => assert.fail('removed: never called'));
  sub.unsubscribe();
  assert.equal(hub.deliverTo(sub, current('k', 1)), false);
  await hub.close();
  assert.throws(() => hub.deliverTo(sub, current('k', 1)), { code: 'HERALD_CLOSED' });
});

test('deliverTo() - from inside the observer\'s own callback that then returns a promise: the next delivery waits for it, timeouts count, drain() and close() end', async (t) => {
  const errors: unknown[] = [];
  const hub = new ObserverManager({ sweepIntervalMs: 0, callbackTimeoutMs: 50, onError: (error) => void errors.push(error) });
  t.after(() => hub.close());
  const seen: unknown[] = [];
  const timeoutsSeenAtCall: number[] = [];
  const sub = hub.observe('k', (change) => {
    seen.push(change.newValue);
    timeoutsSeenAtCall.push(hub.getStats().deliveryTimeouts);
    if (change.newValue === 1) hub.deliverTo(sub, current('k', 'pre'));
    return new Promise<void>(() => {}); // never settles: each delivery ends by its timeout
  }, { label: 'takes the slow path' });
  hub.notify('k', 0, 1);
  await within(hub.drain(), 5000, 'drain');
  assert.deepEqual(seen, [1, 'pre']);
  assert.deepEqual(timeoutsSeenAtCall, [0, 1], 'the second delivery began only once the first had timed out');
  const s = hub.getStats();
  assert.deepEqual([s.deliveries, s.deliveryTimeouts, s.pending, s.queued], [2, 2, 0, 0]);
  assert.equal(errors.length, 2);
  await within(hub.close(), 5000, 'close');
});

test('deliverTo() - a change must be of a key the observer observes', (t) => {
  const { hub } = hubFor(t);
  const sub = hub.observe('k', () => {});
  const pattern = hub.observePattern('a/*/c', () => {});
  assert.throws(() => hub.deliverTo(sub, current('other', 1)), { code: 'HERALD_INVALID_ARGUMENT', message: /change\.key/ });
  assert.throws(() => hub.deliverTo(pattern, current('a/b/d', 1)), { code: 'HERALD_INVALID_ARGUMENT' });
  assert.throws(() => hub.deliverTo(pattern, current('a/b/c/d', 1)), { code: 'HERALD_INVALID_ARGUMENT' });
  assert.equal(hub.deliverTo(pattern, current('a/b/c', 1)), true);
  const dead = hub.observe('k', () => {});
  dead.unsubscribe();
  assert.throws(() => hub.deliverTo(Object.create(dead) as never, current('k', 1)), { code: 'HERALD_INVALID_ARGUMENT' });
});
