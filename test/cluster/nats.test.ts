import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { connect, type NodeConnectionOptions } from '@nats-io/transport-node';
import { NatsBackplane } from '../../src/nats.js';
import { backplaneSuite } from '../../src/testing.js';
import { engineGate, urls } from '../support/engines.js';

const skip = await engineGate('nats');
const raw = skip === false ? await connect({ servers: urls.nats } as NodeConnectionOptions) : undefined;
after(() => raw?.close());

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
