import { after } from 'node:test';
import { connect } from '@nats-io/transport-node';
import { NatsBackplane } from '../../src/nats.js';
import { backplaneSuite } from '../../src/testing.js';
import { engineGate, urls } from '../support/engines.js';
import { faultTests } from '../support/faults.js';

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
