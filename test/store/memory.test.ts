import { SessionStore } from '../../src/index.js';
import { storeSuite } from '../../src/testing.js';

storeSuite({ name: 'SessionStore (memory)', create: (options) => new SessionStore(options) });

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as v from 'valibot';
import { z } from 'zod';
import { ObserverManager, type SessionStoreLike } from '../../src/index.js';
import { exitOf } from '../support/deadline.js';

function memoryStore(t: { after: (fn: () => unknown) => void }, options: { strict?: boolean } = {}): { hub: ObserverManager; store: SessionStoreLike } {
  const hub = new ObserverManager({ sweepIntervalMs: 0 });
  const store = new SessionStore({ hub, expiryCheckMs: 0, ...options });
  t.after(async () => {
    await store.close();
    await hub.close();
  });
  return { hub, store };
}

for (const [vendor, schema] of [
  ['zod', z.object({ celsius: z.number().min(-50).max(60) })],
  ['valibot', v.object({ celsius: v.pipe(v.number(), v.minValue(-50), v.maxValue(60)) })],
] as const) {
  test(`defineVariable() - a ${vendor} schema validates every value, and its issues come with the error`, async (t) => {
    const { store } = memoryStore(t);
    await store.createSession('room');
    await store.defineVariable('room', 'temperature', { schema, initial: { celsius: 21 } });
    assert.deepEqual(await store.set('room', 'temperature', { celsius: 22 }), { oldValue: { celsius: 21 }, newValue: { celsius: 22 }, version: 2 });
    await assert.rejects(store.set('room', 'temperature', { celsius: 99 }), (error: { code?: string; issues?: unknown[] }) => {
      assert.equal(error.code, 'HERALD_INVALID_VALUE');
      assert.ok(Array.isArray(error.issues) && error.issues.length > 0);
      return true;
    });
    await assert.rejects(store.transaction('room', (tx) => tx.set('temperature', { celsius: 'warm' })), { code: 'HERALD_INVALID_VALUE' });
    assert.deepEqual(await store.get('room', 'temperature'), { celsius: 22 });
  });
}

test('expiry - the timer ends expired sessions by itself', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval', 'Date'], now: 1_000_000 });
  const hub = new ObserverManager({ sweepIntervalMs: 0 });
  const store = new SessionStore({ hub, defaultTtlMs: 5_000, expiryCheckMs: 1_000 });
  t.after(async () => {
    await store.close();
    await hub.close();
  });
  await store.createSession('short');
  await store.set('short', 'a', 1);
  const removed: unknown[] = [];
  hub.observePattern('session/short/*', (c) => void removed.push(c.oldValue));
  t.mock.timers.tick(6_000);
  for (let i = 0; i < 20 && removed.length === 0; i++) await hub.drain().then(() => new Promise((resolve) => setImmediate(resolve)));
  assert.deepEqual(removed, [1]);
  assert.equal(await store.getSession('short'), undefined);
});

test('expiry - the expiry timer never keeps a process alive', async () => {
  const entry = fileURLToPath(new URL('../../src/index.ts', import.meta.url));
  const script = `
    const { ObserverManager, SessionStore } = await import(${JSON.stringify(entry)});
    const store = new SessionStore({ hub: new ObserverManager(), defaultTtlMs: 60_000, expiryCheckMs: 5 });
    await store.createSession('s');
    await store.set('s', 'a', 1);
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: 'inherit' });
  assert.equal(await exitOf(child, 20_000), 0, 'the process ended on its own with the store still open');
});

test('watch() - an error thrown while the current value is delivered reaches the hub\'s onError and is counted', async (t) => {
  const errors: unknown[] = [];
  const hub = new ObserverManager({ sweepIntervalMs: 0, onError: (error) => void errors.push(error) });
  const store = new SessionStore({ hub, expiryCheckMs: 0 });
  t.after(async () => {
    await store.close();
    await hub.close();
  });
  await store.createSession('err');
  await store.set('err', 'a', 1);
  const boom = new Error('cannot render the current value');
  const seen: unknown[] = [];
  await store.watch('err', 'a', (change) => {
    if (change.meta['current'] === true) throw boom;
    seen.push(change.newValue);
  }, { includeCurrent: true });
  await store.set('err', 'a', 2);
  await hub.drain();
  assert.deepEqual(errors, [boom]);
  assert.equal(hub.getStats().deliveryErrors, 1);
  assert.deepEqual(seen, [2], 'later changes still arrive');
});

test('expiry - a store dropped without close() is not kept alive by its expiry timer', { skip: (globalThis as { gc?: unknown }).gc === undefined && 'needs node --expose-gc (npm test passes it)' }, async () => {
  const { collectUntil } = await import('../support/gc.js');
  let collected = false;
  const registry = new FinalizationRegistry(() => (collected = true));
  (() => {
    const store = new SessionStore({ hub: new ObserverManager({ sweepIntervalMs: 0 }), expiryCheckMs: 1000 });
    registry.register(store, 'store');
  })();
  assert.ok(await collectUntil(() => collected), 'the store was garbage-collected');
});
