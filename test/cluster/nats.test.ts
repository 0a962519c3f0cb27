import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { ObserverManager } from '../../src/index.js';
import { connect } from '@nats-io/transport-node';
import { NatsBackplane } from '../../src/nats.js';
import { backplaneSuite } from '../../src/testing.js';
import { engineGate, urls } from '../support/engines.js';
import { faultTests } from '../support/faults.js';
import { clusterContract } from '../support/cluster-contract.js';
import { clusterProperty } from '../support/cluster-property.js';
import { OwnNatsServer } from '../support/nats-server.js';

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

clusterContract({
  engine: 'nats',
  url: own?.url ?? urls.nats,
  backplane: (url, options) => new NatsBackplane({ servers: url, prefix, ...(own === undefined ? {} : { monitorUrl: own.monitorUrl }), ...options }),
  skip,
});

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

clusterProperty({
  engine: 'nats',
  url: own?.url ?? urls.nats,
  backplane: (url, options) => new NatsBackplane({ servers: url, prefix, ...(own === undefined ? {} : { monitorUrl: own.monitorUrl }), ...options }),
  skip,
});
