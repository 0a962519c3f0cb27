import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import pg from 'pg';
import { PostgresBackplane } from '../../src/postgres.js';
import { backplaneSuite } from '../../src/testing.js';
import { engineGate, urls } from '../support/engines.js';
import { clusteredHub, trapUnhandled, uniqueKey } from '../support/cluster.js';
import { faultTests } from '../support/faults.js';
import { within } from '../support/deadline.js';
import { TcpProxy } from '../support/proxy.js';

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

const faultSchema = `herald_faults_${process.pid}`;
schemas.add(faultSchema);

faultTests({
  engine: 'postgres',
  url: urls.postgres,
  backplane: (url, options) => new PostgresBackplane({ connectionString: url, schema: faultSchema, ...options }),
  kill: {
    name: 'pg_terminate_backend',
    async run(backplane) {
      const { rows } = await admin!.query<{ ended: boolean }>(
        'SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE application_name = $1',
        [(backplane as PostgresBackplane).listenerName],
      );
      assert.deepEqual(rows, [{ ended: true }], 'the listener connection is found by its name, and ended');
    },
  },
  replays: true,
  skip,
});

describe('postgres backplane: replay limits', { skip }, () => {
  test('a replay the outbox was pruned past ends in a "replay-incomplete" gap signal, and later changes flow', { timeout: 60_000 }, async (t) => {
    const trap = trapUnhandled();
    const schema = `herald_prune_${process.pid}`;
    schemas.add(schema);
    const proxy = await TcpProxy.start(urls.postgres);
    const key = uniqueKey('pruned');
    const a = clusteredHub(new PostgresBackplane({ connectionString: urls.postgres, schema, outboxMaxRows: 1, pruneIntervalMs: 0 }), key);
    let noticed!: () => void;
    const lost = new Promise<void>((resolve) => (noticed = resolve));
    const b = clusteredHub(new PostgresBackplane({
      connectionString: proxy.url(urls.postgres), schema, pruneIntervalMs: 0, reconnect: { maxDelayMs: 200 },
      onError: () => {}, onStateChange: (state) => state === 'reconnecting' && noticed(),
    }), key);
    t.after(async () => {
      await Promise.all([a.hub.close(), b.hub.close()]);
      await proxy.close();
      trap.stop();
    });
    await Promise.all([a.backplane.ready(), b.backplane.ready()]);
    proxy.cut();
    await within(lost, 15_000, 'the backplane to notice the cut (state "reconnecting")');
    for (let i = 1; i <= 10; i++) a.hub.notify(key, i - 1, i);
    await a.backplane.ready();
    assert.equal(await (a.backplane as PostgresBackplane).prune(), 9, 'all but the newest row pruned');
    proxy.restore();
    await b.until((n) => n.gaps.length === 1);
    assert.equal(b.gaps[0]!.reason, 'replay-incomplete');
    assert.deepEqual(b.changes.map((c) => c.newValue), [10], 'what the outbox still had was replayed');
    await b.backplane.ready();
    a.hub.notify(key, 10, 11);
    await b.until((n) => n.changes.length === 2);
    assert.deepEqual(trap.errors, []);
  });
});
