import { after } from 'node:test';
import pg from 'pg';
import { PostgresBackplane } from '../../src/postgres.js';
import { backplaneSuite } from '../../src/testing.js';
import { engineGate, urls } from '../support/engines.js';

const skip = await engineGate('postgres');
const admin = skip === false ? new pg.Pool({ connectionString: urls.postgres, max: 2 }) : undefined;
const schemas = new Set<string>();
after(async () => {
  for (const schema of schemas) await admin!.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await admin?.end();
});

backplaneSuite({
  name: 'postgres',
  node: new URL('./nodes/postgres-node.ts', import.meta.url),
  maxMessageBytes: 256 * 1024,
  publishRaw: async (namespace, key, data) => {
    schemas.add(namespace);
    const channel = new PostgresBackplane({ connectionString: urls.postgres, schema: namespace }).channelOf(key);
    const { rows } = await admin!.query<{ id: string }>(`INSERT INTO "${namespace}".outbox (origin, key, payload) VALUES ('stranger', $1, $2) RETURNING id`, [key, data]);
    await admin!.query('SELECT pg_notify($1, $2)', [channel, rows[0]!.id]);
  },
  skipAll: skip,
});
