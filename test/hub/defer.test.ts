import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ObserverManager, SessionStore } from '../../src/index.js';
import { within } from '../support/deadline.js';

test('defer().commit() - an equals that throws for one key announces every key, that one as changed, and never leaves a batch half-announced', async (t) => {
  const hub = new ObserverManager({
    sweepIntervalMs: 0,
    equals: (a, b) => {
      if (a === 'boom') throw new Error('equals');
      return Object.is(a, b);
    },
  });
  t.after(() => hub.close());
  const seen: string[] = [];
  hub.observePattern('cart/*', (change) => void seen.push(`${change.key}:${String(change.newValue)}`));
  const pending = hub.defer();
  pending.notify('cart/a', 1, 2);
  pending.notify('cart/b', 'boom', 3);
  pending.notify('cart/c', 4, 4); // unchanged: skipped
  pending.notify('cart/d', 5, 6);
  assert.equal(pending.commit(), 3);
  await within(hub.drain(), 5000, 'drain');
  assert.deepEqual(seen, ['cart/a:2', 'cart/b:3', 'cart/d:6']);
  assert.equal(hub.getStats().notificationsSkipped, 1);
});

test('SessionStore - a write that is durable resolves and is announced even when the hub\'s equals throws', async (t) => {
  const hub = new ObserverManager({
    sweepIntervalMs: 0,
    equals: (a) => {
      if (a === 'boom') throw new Error('equals');
      return false;
    },
  });
  t.after(() => hub.close());
  const store = new SessionStore({ hub, expiryCheckMs: 0 });
  t.after(() => store.close());
  await store.createSession('s');
  await store.set('s', 'n', 'boom');
  const seen: unknown[] = [];
  await store.watch('s', 'n', (change) => void seen.push(change.newValue));
  const result = await store.set('s', 'n', 'next');
  assert.equal(result.newValue, 'next');
  await within(hub.drain(), 5000, 'drain');
  assert.deepEqual(seen, ['next']);
  assert.equal(await store.get('s', 'n'), 'next');
});
