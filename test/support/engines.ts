import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { Redis } from 'ioredis';
import { connect } from '@nats-io/transport-node';

export const urls = {
  redis: process.env['HERALD_REDIS_URL'] ?? 'redis://127.0.0.1:6379',
  nats: process.env['HERALD_NATS_URL'] ?? 'nats://127.0.0.1:4222',
  postgres: process.env['HERALD_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test',
} as const;

/** Connects to an engine and back, or throws why it cannot. */
export const probes: Record<keyof typeof urls, () => Promise<void>> = {
  async redis() {
    const client = new Redis(urls.redis, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.ping();
    } finally {
      client.disconnect();
    }
  },
  async nats() {
    const connection = await connect({ servers: urls.nats, reconnect: false, timeout: 5000 });
    await connection.close();
  },
  async postgres() {
    const client = new pg.Client({ connectionString: urls.postgres, connectionTimeoutMillis: 5000 });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.query('SELECT 1');
    } finally {
      await client.end().catch(() => {});
    }
  },
};

/**
 * Whether the tests of `engine` can run: false when they can, or the reason
 * to skip. Under CI=true an unreachable engine is a failing test instead.
 */
export async function engineGate(engine: keyof typeof urls): Promise<string | false> {
  try {
    await probes[engine]();
    return false;
  } catch (error) {
    const why = `${engine} is unreachable at ${urls[engine]} (${(error as Error).message})`;
    if (process.env['CI'] === 'true') {
      test(`${engine} is reachable (CI requires it)`, () => assert.fail(why));
      return why;
    }
    return `${why}: start it, or set HERALD_${engine === 'postgres' ? 'PG' : engine.toUpperCase()}_URL`;
  }
}
