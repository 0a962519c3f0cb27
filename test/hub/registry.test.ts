import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ObserverManager, Scope, type Subscription } from '../../src/index.js';
import { within } from '../support/deadline.js';
import { holdsOnFirst } from '../support/held.js';

function hubFor(t: { after(fn: () => unknown): void }): { hub: ObserverManager; errors: unknown[] } {
  const errors: unknown[] = [];
  const hub = new ObserverManager({ sweepIntervalMs: 0, onError: (error) => void errors.push(error) });
  t.after(() => hub.close());
  return { hub, errors };
}

test('unsubscribe() - an async observer removing itself while its list compacts, with a pattern observer present, leaves every other observer served', async (t) => {
  const { hub, errors } = hubFor(t);
  hub.observePattern('*', () => {});
  const self: Subscription = hub.observe('a', () => {
    self.unsubscribe();
    return Promise.resolve();
  });
  const others = Array.from({ length: 31 }, () => hub.observe('a', () => {}));
  const seen: unknown[] = [];
  hub.observe('a', (change) => void seen.push(change.newValue));
  for (const other of others) other.unsubscribe();
  hub.notify('a', 0, 1);
  await within(hub.drain(), 5000, 'drain');
  hub.notify('a', 1, 2);
  await within(hub.drain(), 5000, 'drain');
  assert.deepEqual(seen, [1, 2]);

  const later: unknown[] = [];
  hub.observe('a', (change) => void later.push(change.newValue));
  hub.notify('a', 2, 3);
  await within(hub.drain(), 5000, 'drain');
  assert.deepEqual(seen, [1, 2, 3]);
  assert.deepEqual(later, [3]);
  assert.deepEqual(errors, []);
  const s = hub.getStats();
  assert.equal(s.deliveries + s.dropped + s.coalesced + s.cancelled, s.fanOut);
});

test('observePattern() - a change reaches a key\'s observers and matching patterns\' once each, in registration order, whatever removals happen meanwhile', async (t) => {
  const { hub } = hubFor(t);
  const order: string[] = [];
  const subs: Subscription[] = [];
  for (let i = 0; i < 100; i++) {
    const name = `k${i}`;
    subs.push(i % 10 === 3 ? hub.observePattern('fan/*', () => void order.push(name)) : hub.observe('fan/x', () => void order.push(name)));
  }
  // Removed after the notify: removal wins, and they are counted cancelled.
  hub.notify('fan/x', 0, 1);
  for (let i = 0; i < 100; i += 7) subs[i]!.unsubscribe();
  await within(hub.drain(), 5000, 'drain');
  const expected = Array.from({ length: 100 }, (_, i) => `k${i}`).filter((_, i) => i % 7 !== 0);
  assert.deepEqual(order, expected);
  const s = hub.getStats();
  assert.equal(s.fanOut, 100);
  assert.equal(s.cancelled, 15);
  assert.equal(s.deliveries, 85);
});

test('notify() - a key of 20 000 segments with pattern observers present is delivered, and a failed call changes nothing', async (t) => {
  const { hub } = hubFor(t);
  const deep = Array.from({ length: 20_000 }, () => 'x').join('/');
  const seen: string[] = [];
  hub.observePattern('x/**', (change) => void seen.push(`rest:${change.key.length}`));
  hub.observePattern(`${deep}`, () => void seen.push('exact'));
  assert.equal(hub.notify(deep, 0, 1), true);
  await within(hub.drain(), 5000, 'drain');
  assert.deepEqual(seen, [`rest:${deep.length}`, 'exact']);
  assert.equal(hub.observerCount(deep), 2);
  assert.equal(hub.inspect(deep).observerCount, 2);

  const before = hub.getStats();
  assert.throws(() => hub.notify('', 0, 1), { code: 'HERALD_INVALID_KEY' });
  assert.throws(() => hub.notify('k', 0, 1, [] as never), { code: 'HERALD_INVALID_ARGUMENT' });
  const after = hub.getStats();
  assert.equal(after.notifications, before.notifications);
  assert.equal(after.fanOut, before.fanOut);
});

test('remove(id) - only the exact id removes: a padded or altered number never removes another observer', (t) => {
  const { hub } = hubFor(t);
  const sub = hub.observe('k', () => {});
  const [, n] = /^k([0-9]+):/.exec(sub.id)!;
  for (const id of [`k0${n}:k`, `k+${n}:k`, `k${n}.0:k`, `k${n} :k`, ` k${n}:k`, `k${n}:k `, `p${n}:k`, `k${n}:`, `k${n}`, 'k1e0:k', `k${Number(n) + 1}:k`]) {
    assert.equal(hub.remove(id), false, id);
  }
  assert.equal(sub.active, true);
  assert.equal(hub.remove(sub.id), true);
  assert.equal(sub.active, false);
});

test('scope.observe() - refuses what observe() refuses, onClose included, and registers nothing', (t) => {
  const { hub } = hubFor(t);
  const scope: Scope = hub.scope();
  const bad: [unknown, string][] = [
    [{ onClose: 'not a function' }, 'HERALD_INVALID_OPTION'],
    [{ onClose: 42 }, 'HERALD_INVALID_OPTION'],
    ['options', 'HERALD_INVALID_OPTION'],
    [[], 'HERALD_INVALID_OPTION'],
    [{ queue: { limit: -1 } }, 'HERALD_INVALID_OPTION'],
    [{ signal: {} }, 'HERALD_INVALID_OPTION'],
    [{ owner: 5 }, 'HERALD_INVALID_OPTION'],
    [{ label: 5 }, 'HERALD_INVALID_OPTION'],
  ];
  for (const [options, code] of bad) {
    assert.throws(() => hub.observe('k', () => {}, options as never), { code }, `hub.observe with ${JSON.stringify(options)}`);
    assert.throws(() => scope.observe('k', () => {}, options as never), { code }, `scope.observe with ${JSON.stringify(options)}`);
    assert.throws(() => scope.observePattern('k/*', () => {}, options as never), { code }, `scope.observePattern with ${JSON.stringify(options)}`);
  }
  assert.equal(scope.size, 0);
  assert.equal(hub.observerCount(), 0);
  assert.deepEqual(hub.keys(), []);
  assert.deepEqual(hub.patterns(), []);
});

test('remove() - an object that only inherits from a handle removes nothing; the observer stays and is served', async (t) => {
  const { hub } = hubFor(t);
  let got = 0;
  const sub = hub.observe('k', () => void got++);
  const fake = Object.create(sub) as Subscription;
  assert.equal(hub.remove(fake), false);
  assert.equal(fake.unsubscribe(), false);
  assert.equal(sub.active, true);
  assert.equal(hub.observerCount('k'), 1);
  assert.deepEqual(hub.keys(), ['k']);
  hub.notify('k', 0, 1);
  await within(hub.drain(), 5000, 'drain');
  assert.equal(got, 1);
});

test('observe() - a signal that only inherits from AbortSignal is refused with HERALD_INVALID_OPTION, and nothing is registered', (t) => {
  const { hub } = hubFor(t);
  const inherited = Object.create(AbortSignal.prototype) as AbortSignal;
  const withOwnAborted = Object.defineProperty(Object.create(AbortSignal.prototype), 'aborted', { value: false }) as AbortSignal;
  for (const signal of [inherited, withOwnAborted]) {
    assert.throws(() => hub.observe('k', () => {}, { signal }), { code: 'HERALD_INVALID_OPTION' });
    assert.throws(() => hub.observePattern('x/*', () => {}, { signal }), { code: 'HERALD_INVALID_OPTION' });
    assert.throws(() => hub.watch('k', { signal }), { code: 'HERALD_INVALID_OPTION' });
  }
  assert.deepEqual(hub.keys(), []);
  assert.deepEqual(hub.patterns(), []);
  assert.equal(hub.observerCount(), 0);
});

test('removeAfterQueued() - the observer goes once the changes before the call have reached it, later ones are cancelled, and nobody else is waited for', async (t) => {
  const { hub, errors } = hubFor(t);
  hub.observe('unrelated', () => new Promise<void>(() => {})); // hangs for good: must not hold the removal back
  hub.notify('unrelated', 0, 1);
  const closed: string[] = [];
  const { sub, seen, inFlight, release } = holdsOnFirst(hub, 'k', { onClose: (reason) => void closed.push(reason) });
  hub.notify('k', 0, 1);
  await inFlight();
  hub.notify('k', 1, 2); // queued behind 1
  assert.equal(hub.removeAfterQueued(sub, 'session-ended'), true);
  hub.notify('k', 2, 3); // after the call: never reaches it
  assert.equal(sub.active, true);
  release();
  await within(new Promise<void>((resolve) => {
    const check = (): void => (sub.active ? void setImmediate(check) : resolve());
    check();
  }), 5000, 'the observer to go');
  assert.deepEqual(seen, [1, 2]);
  assert.deepEqual(closed, ['session-ended']);
  assert.deepEqual(errors, []);
  assert.equal(hub.removeAfterQueued(sub), false);
  assert.throws(() => hub.removeAfterQueued(sub, 'nope' as never), { code: 'HERALD_INVALID_ARGUMENT' });
  assert.throws(() => hub.removeAfterQueued(Object.create(sub) as Subscription), { code: 'HERALD_INVALID_ARGUMENT' });
});
