import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { ObserverManager } from '../../src/index.js';
import { connect } from '@nats-io/transport-node';
import { NatsBackplane } from '../../src/nats.js';
import { backplaneSuite } from '../../src/testing.js';
import { engineGate, urls } from '../support/engines.js';
import { faultTests } from '../support/faults.js';
import { clusterContract, type ClusterContractOptions } from '../support/cluster-contract.js';
import { clusterProperty } from '../support/cluster-property.js';
import { OwnNatsServer } from '../support/nats-server.js';
import { TcpProxy } from '../support/proxy.js';
import { clusteredHub, trapUnhandled, uniqueKey } from '../support/cluster.js';

const skip = await engineGate('nats');
const raw = skip === false ? await connect({ servers: urls.nats }) : undefined;
after(() => raw?.close());
const prefix = `f${process.pid}`;

backplaneSuite({
  name: 'nats',
  node: new URL('./nodes/nats-node.ts', import.meta.url),
  maxMessageBytes: raw?.info?.max_payload ?? 1024 * 1024,
  publishRaw: async (namespace, key, data) => {
    raw!.publish(new NatsBackplane({ prefix: namespace }).subjectOf(key), data);
    await raw!.flush();
  },
  skipAll: skip,
});

// Core NATS has no command that ends another client's connection, so its faults come from the proxy.
faultTests({
  engine: 'nats',
  url: urls.nats,
  backplane: (url, options) => new NatsBackplane({ servers: url, prefix, ...options }),
  replays: false,
  skip,
});

// Interest is checked on the server itself, through its monitoring endpoint: a server of the tests' own has one.
const own = skip === false ? await OwnNatsServer.start() : undefined;
after(() => own?.stop());

/** The engine as the order-and-interest tests and the property drive it. */
const cluster: ClusterContractOptions = {
  engine: 'nats',
  url: own?.url ?? urls.nats,
  backplane: (url, options) => new NatsBackplane({ servers: url, prefix, ...(own === undefined ? {} : { monitorUrl: own.monitorUrl }), ...options }),
  skip,
};

clusterContract(cluster);

describe('nats backplane: limits', { skip }, () => {
  test('a key or pattern whose subject passes the server\'s protocol line limit is refused up front with a coded error, and nothing is changed', async (t) => {
    const hub = new ObserverManager({ backplane: new NatsBackplane({ servers: urls.nats, prefix }) });
    t.after(() => hub.close());
    const long = `doc/${'語'.repeat(1400)}`;
    assert.throws(() => hub.observe(long, () => {}), { code: 'HERALD_INVALID_KEY', message: /NATS subject takes \d+ bytes/ });
    assert.throws(() => hub.observePattern(`${long}/*`, () => {}), { code: 'HERALD_INVALID_PATTERN' });
    assert.throws(() => hub.notify(long, 0, 1), { code: 'HERALD_INVALID_KEY' });
    assert.throws(() => hub.observe('doc/\uD800', () => {}), { code: 'HERALD_INVALID_KEY', message: /lone surrogate/ });
    assert.throws(() => hub.notify('doc/\uD800', 0, 1), { code: 'HERALD_INVALID_KEY' });
    assert.equal(hub.observerCount(), 0);
    const fine = hub.observe('doc/short', () => {});
    await (hub.backplane as NatsBackplane).ready();
    assert.equal(fine.active, true);
  });
});

clusterProperty(cluster);

describe('nats backplane: resets', { skip }, () => {
  test('changes written into a socket that resets while the server stays reachable are sent again: a node never cut receives every one, once, in order', { timeout: 120_000 }, async (t) => {
    const trap = trapUnhandled();
    const proxy = await TcpProxy.start(urls.nats);
    const key = uniqueKey('reset');
    const a = clusteredHub(new NatsBackplane({ servers: proxy.url(urls.nats), prefix, onError: () => {}, maxBuffered: 1_000_000, reconnect: { initialDelayMs: 1, maxDelayMs: 5 } }), key);
    const r = clusteredHub(new NatsBackplane({ servers: urls.nats, prefix }), key);
    t.after(async () => {
      await Promise.all([a.hub.close(), r.hub.close()]);
      await proxy.close();
      trap.stop();
    });
    await Promise.all([a.backplane.ready(), r.backplane.ready()]);
    let n = 0;
    let running = true;
    const pump = (async () => {
      while (running) {
        for (let i = 0; i < 20; i++) a.hub.notify(key, n, ++n);
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    for (let cut = 0; cut < 10; cut++) {
      await new Promise((resolve) => setTimeout(resolve, 40));
      proxy.cut();
      proxy.restore(); // reachable again at once: a reset, not an outage
    }
    running = false;
    await pump;
    await a.backplane.ready({ timeoutMs: 60_000 });
    await r.until((node) => node.changes.length >= n, `all ${n} changes`, 60_000);
    await r.hub.drain();
    const values = r.changes.map((c) => c.newValue as number);
    assert.equal(values.length, n, 'none twice');
    assert.ok(values.every((v, i) => v === i + 1), 'every change, in order');
    assert.deepEqual(r.gaps, []);
    assert.deepEqual(trap.errors, []);
  });
});
