import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { ObserverManager, isGap, type Backplane, type Change } from '../../src/index.js';
import { RedisBackplane } from '../../src/redis.js';
import { backplaneSuite } from '../../src/testing.js';
import { engineGate, urls } from '../support/engines.js';
import { clusteredHub, trapUnhandled, uniqueKey } from '../support/cluster.js';
import { within } from '../support/deadline.js';
import { faultTests } from '../support/faults.js';
import { TcpProxy } from '../support/proxy.js';
import { clusterContract, type ClusterContractOptions } from '../support/cluster-contract.js';
import { clusterProperty } from '../support/cluster-property.js';

const skip = await engineGate('redis');
const raw = skip === false ? new Redis(urls.redis) : undefined;
after(() => raw?.disconnect());
const prefix = `f${process.pid}:`;

backplaneSuite({
  name: 'redis',
  node: new URL('./nodes/redis-node.ts', import.meta.url),
  maxMessageBytes: 64 * 1024,
  publishRaw: async (namespace, key, data) => void (await raw!.publish(`${namespace}:${key}`, data)),
  skipAll: skip,
});

/** Kills a backplane's subscriber connection from the server side, found by its name in CLIENT LIST. */
async function killSubscriber(backplane: Backplane): Promise<void> {
  const list = (await raw!.client('LIST')) as string;
  const id = new RegExp(`id=(\\d+) [^\\n]* name=${(backplane as RedisBackplane).subscriberName} `).exec(list)?.[1];
  assert.ok(id !== undefined, 'the subscriber connection is listed by its name');
  await raw!.client('KILL', 'ID', id);
}

faultTests({
  engine: 'redis',
  url: urls.redis,
  backplane: (url, options) => new RedisBackplane({ url, prefix, ...options }),
  kill: { name: 'CLIENT KILL', run: killSubscriber },
  replays: false,
  skip,
});

/** The engine as the order-and-interest tests and the property drive it. */
const cluster: ClusterContractOptions = {
  engine: 'redis',
  url: urls.redis,
  backplane: (url, options) => new RedisBackplane({ url, prefix, ...options }),
  skip,
};

clusterContract(cluster);

describe('redis backplane: the publisher connection', { skip }, () => {
  test('an observer removed while only the publisher connection is down leaves no engine subscription, and no gap is signalled', { timeout: 60_000 }, async (t) => {
    const trap = trapUnhandled();
    let down!: () => void;
    let up: (() => void) | undefined;
    const lost = new Promise<void>((resolve) => (down = resolve));
    const backplane = new RedisBackplane({
      prefix, onError: () => {}, reconnect: { maxDelayMs: 200 },
      onStateChange: (state) => {
        if (state === 'reconnecting') down();
        if (state === 'connected') up?.();
      },
    });
    const node = clusteredHub(backplane, uniqueKey('publisher'));
    const extra = node.hub.observe(uniqueKey('publisher-extra'), () => {});
    t.after(async () => {
      await node.hub.close();
      trap.stop();
    });
    await backplane.ready();
    assert.equal(await backplane.engineSubscriptions(), 2);
    const back = new Promise<void>((resolve) => (up = resolve));
    const list = (await raw!.client('LIST')) as string;
    const id = new RegExp(`id=(\\d+) [^\\n]* name=herald-pub-${backplane.nodeId} `).exec(list)?.[1];
    assert.ok(id !== undefined, 'the publisher connection is listed by its name');
    await raw!.client('KILL', 'ID', id);
    await within(lost, 15_000, 'the backplane to notice');
    extra.unsubscribe();
    await within(back, 15_000, 'the publisher to reconnect');
    await backplane.ready();
    assert.equal(await backplane.engineSubscriptions(), 1, 'the subscriber connection, which stayed up, dropped the removed observer\'s channel');
    node.hub.notify(node.key, 0, 1);
    await node.hub.drain();
    assert.deepEqual(node.gaps, [], 'nothing sent to this node was missed: no gap');
    assert.equal(backplane.stats().reconnects, 1);
    assert.deepEqual(trap.errors, []);
  });
});

describe('redis backplane: subscriptions in flight', { skip }, () => {
  test('an observer whose SUBSCRIBE is in flight when the connection is cut, removed while cut off, leaves no subscription on the server', { timeout: 60_000 }, async (t) => {
    const trap = trapUnhandled();
    const proxy = await TcpProxy.start(urls.redis);
    const hub = new ObserverManager({ backplane: new RedisBackplane({ url: proxy.url(urls.redis), prefix, onError: () => {}, reconnect: { maxDelayMs: 100 } }) });
    t.after(async () => {
      await hub.close();
      await proxy.close();
      trap.stop();
    });
    const backplane = hub.backplane as RedisBackplane;
    hub.observe(uniqueKey('inflight-keep'), () => {});
    await backplane.ready();
    for (let round = 0; round < 5; round++) {
      const key = uniqueKey('inflight');
      const observer = hub.observe(key, () => {});
      proxy.cut(); // its SUBSCRIBE is on the way
      await new Promise((resolve) => setImmediate(resolve));
      observer.unsubscribe();
      proxy.restore();
      await backplane.ready({ timeoutMs: 15_000 });
      const [, subscribers] = (await raw!.pubsub('NUMSUB', `${prefix}${key}`)) as [string, number];
      assert.equal(subscribers, 0, `round ${round}: no subscriber of the removed key on the server`);
      assert.equal(await backplane.engineSubscriptions(), 1, `round ${round}: the engine holds only the kept key`);
    }
    assert.deepEqual(trap.errors, []);
  });
});

describe('redis backplane: gap markers and options', { skip }, () => {
  test('after a lost connection, watch() yields a gap marker with { gaps: "yield" } and rejects with HERALD_GAP by default', async (t) => {
    const trap = trapUnhandled();
    const key = uniqueKey('watch');
    const a = clusteredHub(new RedisBackplane({ prefix }), key);
    const b = clusteredHub(new RedisBackplane({ prefix, onError: () => {} }), key);
    t.after(async () => {
      await Promise.all([a.hub.close(), b.hub.close()]);
      trap.stop();
    });
    const yielding = b.hub.watch(key, { gaps: 'yield' });
    const throwing = b.hub.watch(key);
    const thrown = throwing.next();
    await Promise.all([a.backplane.ready(), b.backplane.ready()]);
    await killSubscriber(b.backplane);
    await b.until((n) => n.gaps.length === 1);
    assert.ok(isGap((await within(yielding.next(), 15_000, 'watch() to yield the gap marker')).value), 'watch() yields the gap marker');
    await assert.rejects(within(thrown, 15_000, 'watch() to reject with HERALD_GAP'), { code: 'HERALD_GAP' });
    await b.backplane.ready();
    a.hub.notify(key, 0, 1);
    assert.equal(((await within(yielding.next(), 15_000, 'watch() to yield the later change')).value as Change).newValue, 1, 'and goes on with later changes');
    const stats = b.hub.getStats();
    assert.equal(stats.backplane!.gaps, 1);
    assert.equal(stats.gapSignals, 3, 'the onGap observer and both iterators');
    assert.deepEqual(trap.errors, []);
  });

  test('bad options are refused with coded errors, and a backplane serves one hub', async () => {
    assert.throws(() => new RedisBackplane({ url: 'http://x' }), { code: 'HERALD_INVALID_OPTION' });
    assert.throws(() => new RedisBackplane({ prefix: 'a*' }), { code: 'HERALD_INVALID_OPTION' });
    assert.throws(() => new RedisBackplane({ maxMessageBytes: 0 }), { code: 'HERALD_INVALID_OPTION' });
    assert.throws(() => new RedisBackplane({ closeTimeoutMs: -1 }), { code: 'HERALD_INVALID_OPTION' });
    assert.throws(() => new ObserverManager({ backplane: {} as never }), { code: 'HERALD_INVALID_OPTION' });
    const shared = new RedisBackplane({ prefix });
    const first = new ObserverManager({ backplane: shared });
    assert.throws(() => new ObserverManager({ backplane: shared }), { code: 'HERALD_INVALID_OPTION' });
    await first.close();
  });
});

clusterProperty(cluster);
