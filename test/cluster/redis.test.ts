import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { ObserverManager, isGap, type Change } from '../../src/index.js';
import { RedisBackplane } from '../../src/redis.js';
import { backplaneSuite } from '../../src/testing.js';
import { engineGate, urls } from '../support/engines.js';
import { clusteredHub, trapUnhandled, uniqueKey } from '../support/cluster.js';

const skip = await engineGate('redis');
const raw = skip === false ? new Redis(urls.redis) : undefined;
after(() => raw?.disconnect());

backplaneSuite({
  name: 'redis',
  node: new URL('./nodes/redis-node.ts', import.meta.url),
  maxMessageBytes: 64 * 1024,
  publishRaw: async (namespace, key, data) => void (await raw!.publish(`${namespace}:${key}`, data)),
  skipAll: skip,
});

describe('redis backplane faults', { skip }, () => {
  const prefix = `f${process.pid}:`;
  const backplane = (url = urls.redis): RedisBackplane => new RedisBackplane({ url, prefix, onError: () => {} });

  test('a subscriber connection killed by the server (CLIENT KILL): no crash, reconnects, gap signal, later changes flow', async (t) => {
    const trap = trapUnhandled();
    t.after(() => trap.stop());
    const key = uniqueKey('kill');
    const a = clusteredHub(backplane(), key);
    const b = clusteredHub(backplane(), key);
    t.after(async () => void (await Promise.all([a.hub.close(), b.hub.close()])));
    const watcher = b.hub.watch(key, { gaps: 'yield' });
    await Promise.all([a.backplane.ready(), b.backplane.ready()]);
    const list = (await raw!.client('LIST')) as string;
    const id = new RegExp(`id=(\\d+) [^\\n]* name=${(b.backplane as RedisBackplane).subscriberName} `).exec(list)?.[1];
    assert.ok(id !== undefined, 'the subscriber connection is listed by its name');
    await raw!.client('KILL', 'ID', id);
    await b.until((n) => n.gaps.length === 1);
    assert.equal(b.gaps[0]!.reason, 'reconnected');
    assert.ok(isGap((await watcher.next()).value), 'watch() yields the gap marker');
    a.hub.notify(key, 0, 1);
    await b.until((n) => n.changes.length === 1);
    assert.equal(((await watcher.next()).value as Change).newValue, 1);
    const stats = b.hub.getStats();
    assert.equal(stats.backplane!.reconnects, 1);
    assert.equal(stats.backplane!.gaps, 1);
    assert.equal(stats.gapSignals, 2);
    assert.deepEqual(trap.errors, []);
  });

  test('the engine unreachable when the hub starts: no crash, local delivery works, changes wait in the bounded buffer, close() resolves', async (t) => {
    const trap = trapUnhandled();
    t.after(() => trap.stop());
    const key = uniqueKey('unreachable');
    const a = clusteredHub(new RedisBackplane({ url: 'redis://127.0.0.1:1', prefix, maxBuffered: 2, onError: () => {} }), key);
    for (let i = 0; i < 3; i++) a.hub.notify(key, i, i + 1);
    await a.until((n) => n.changes.length === 3);
    const stats = a.hub.getStats().backplane!;
    assert.equal(stats.state, 'connecting');
    assert.equal(stats.buffered, 2);
    assert.equal(stats.publishDropped, 1);
    await a.hub.close();
    assert.equal(a.hub.getStats().backplane!.state, 'closed');
    assert.deepEqual(trap.errors, []);
  });

  test('bad options are refused with coded errors, and a backplane serves one hub', async () => {
    assert.throws(() => new RedisBackplane({ url: 'http://x' }), { code: 'HERALD_INVALID_OPTION' });
    assert.throws(() => new RedisBackplane({ prefix: 'a*' }), { code: 'HERALD_INVALID_OPTION' });
    assert.throws(() => new RedisBackplane({ maxMessageBytes: 0 }), { code: 'HERALD_INVALID_OPTION' });
    assert.throws(() => new ObserverManager({ backplane: {} as never }), { code: 'HERALD_INVALID_OPTION' });
    const shared = backplane();
    const first = new ObserverManager({ backplane: shared });
    assert.throws(() => new ObserverManager({ backplane: shared }), { code: 'HERALD_INVALID_OPTION' });
    await first.close();
  });
});
