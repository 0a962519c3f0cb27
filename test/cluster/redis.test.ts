import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { ObserverManager, isGap, type Change, type Gap } from '../../src/index.js';
import { RedisBackplane } from '../../src/redis.js';
import { backplaneSuite } from '../../src/testing.js';
import { engineGate, urls } from '../support/engines.js';
import { TcpProxy } from '../support/proxy.js';

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
