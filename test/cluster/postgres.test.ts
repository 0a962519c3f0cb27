import assert from 'node:assert/strict';
import { after, describe, test, type TestContext } from 'node:test';
import pg from 'pg';
import { variableKey, type BackplaneOptions } from '../../src/index.js';
import { PostgresBackplane, PostgresSessionStore } from '../../src/postgres.js';
import { backplaneSuite } from '../../src/testing.js';
import { engineGate, urls } from '../support/engines.js';
import { clusteredHub, trapUnhandled, uniqueKey, type ClusteredHub } from '../support/cluster.js';
import { faultTests } from '../support/faults.js';
import { clusterContract, type ClusterContractOptions } from '../support/cluster-contract.js';
import { clusterProperty } from '../support/cluster-property.js';
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

/** The engine as the order-and-interest tests and the property drive it. */
const cluster: ClusterContractOptions = {
  engine: 'postgres',
  url: urls.postgres,
  backplane: (url, options) => new PostgresBackplane({ connectionString: url, schema: faultSchema, pruneIntervalMs: 0, ...options }),
  skip,
};

clusterContract(cluster);

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

describe('postgres backplane: one ordered inbound path', { skip }, () => {
  /** Two nodes on their own schema: `a` direct, `b` through a proxy, observing one key. */
  function nodes(t: TestContext, name: string, proxy?: TcpProxy, bOptions: BackplaneOptions & { maxReplayRows?: number } = {}): { a: ClusteredHub; b: ClusteredHub; schema: string } {
    const trap = trapUnhandled();
    const schema = `herald_${name}_${process.pid}`;
    schemas.add(schema);
    const key = uniqueKey(name);
    const a = clusteredHub(new PostgresBackplane({ connectionString: urls.postgres, schema, pruneIntervalMs: 0 }), key);
    const b = clusteredHub(new PostgresBackplane({
      connectionString: proxy?.url(urls.postgres) ?? urls.postgres, schema, pruneIntervalMs: 0, reconnect: { maxDelayMs: 200 }, onError: () => {}, ...bOptions,
    }), key);
    t.after(async () => {
      await Promise.all([a.hub.close(), b.hub.close()]);
      await proxy?.close();
      trap.stop();
      assert.deepEqual(trap.errors, [], 'no unhandled error or rejection');
    });
    return { a, b, schema };
  }

  test('a NOTIFY whose id no row can have (past bigint), amid real changes, costs nothing: every change arrives, in order', { timeout: 60_000 }, async (t) => {
    const { a, b } = nodes(t, 'bogus');
    await Promise.all([a.backplane.ready(), b.backplane.ready()]);
    const channel = (b.backplane as PostgresBackplane).channelOf(b.key);
    for (let i = 1; i <= 300; i++) {
      a.hub.notify(a.key, i - 1, i);
      if (i % 50 === 0) await admin!.query('SELECT pg_notify($1, $2)', [channel, '9999999999999999999']);
    }
    await a.backplane.ready();
    await b.until((n) => n.changes.length === 300, 'all 300 changes');
    assert.deepEqual(b.changes.map((c) => c.newValue), Array.from({ length: 300 }, (_, i) => i + 1));
    assert.deepEqual(b.gaps, []);
  });

  test('a key PostgreSQL cannot store (a NUL in it) is refused by notify and observe with HERALD_INVALID_KEY, and the rest of the batch goes out', { timeout: 60_000 }, async (t) => {
    const { a, b } = nodes(t, 'nul');
    await Promise.all([a.backplane.ready(), b.backplane.ready()]);
    assert.throws(() => a.hub.observe('bad\0key', () => {}), { code: 'HERALD_INVALID_KEY', message: /NUL/ });
    a.hub.notify(a.key, 0, 1);
    assert.throws(() => a.hub.notify('bad\0key', 0, 1), { code: 'HERALD_INVALID_KEY' });
    a.hub.notify(a.key, 1, 2);
    await a.backplane.ready();
    await b.until((n) => n.changes.length === 2, 'the two good changes');
    assert.equal(a.hub.getStats().backplane!.publishFailed, 0);
  });

  test('after a short outage a node reads on from where it was, not from its start: 10 missed changes replay within maxReplayRows 15, after 100 it had already', { timeout: 60_000 }, async (t) => {
    const proxy = await TcpProxy.start(urls.postgres);
    let lost!: () => void;
    const cut = new Promise<void>((resolve) => (lost = resolve));
    const { a, b } = nodes(t, 'short', proxy, { maxReplayRows: 15, onStateChange: (state) => state === 'reconnecting' && lost() });
    await Promise.all([a.backplane.ready(), b.backplane.ready()]);
    for (let i = 1; i <= 100; i++) a.hub.notify(a.key, i - 1, i);
    await b.until((n) => n.changes.length === 100, 'the first 100 changes');
    proxy.cut();
    await within(cut, 15_000, 'the cut to be noticed');
    for (let i = 101; i <= 110; i++) a.hub.notify(a.key, i - 1, i);
    await a.backplane.ready();
    proxy.restore();
    await b.until((n) => n.changes.length === 110, 'the 10 missed changes');
    await b.backplane.ready();
    assert.deepEqual(b.changes.slice(100).map((c) => c.newValue), Array.from({ length: 10 }, (_, i) => 101 + i));
    assert.deepEqual(b.gaps, [], 'a complete replay is no gap');
  });

  test('a transaction that commits after a later one (its outbox id below the cursor) is still delivered, once, after it', { timeout: 60_000 }, async (t) => {
    const { a, b } = nodes(t, 'late');
    await Promise.all([a.backplane.ready(), b.backplane.ready()]);
    const pool = new pg.Pool({ connectionString: urls.postgres, max: 2 });
    t.after(() => pool.end());
    // A long transaction writes its outbox row now (an id below what follows) and commits only later.
    const client = await pool.connect();
    await client.query('BEGIN');
    await (a.backplane as PostgresBackplane).stage(client, [{ key: a.key, oldValue: 0, newValue: 'slow', meta: {} }]);
    a.hub.notify(a.key, 0, 'fast');
    await a.backplane.ready();
    await b.until((n) => n.changes.length === 1, 'the fast change');
    await client.query('COMMIT');
    client.release();
    await b.until((n) => n.changes.length >= 2, 'the late commit');
    await b.backplane.ready();
    await b.hub.drain();
    assert.deepEqual(b.changes.map((c) => c.newValue), ['fast', 'slow'], 'in the order they committed, each once');
  });

  test('a store on a hub with this backplane: a commit reaches the other node, a rollback and a failed COMMIT reach no node', { timeout: 60_000 }, async (t) => {
    const { a, b, schema } = nodes(t, 'outbox');
    await Promise.all([a.backplane.ready(), b.backplane.ready()]);
    const pool = new pg.Pool({ connectionString: urls.postgres, max: 4 });
    t.after(() => pool.end());
    const store = new PostgresSessionStore({ hub: a.hub, pool, schema, expiryCheckMs: 0 });
    t.after(() => store.close());
    const id = uniqueKey('outbox').replaceAll('/', '-');
    await store.createSession(id);
    const key = variableKey(id, 'v');
    const onB: unknown[] = [];
    b.hub.observe(key, (change) => void onB.push(change.newValue));
    await b.backplane.ready();
    await store.set(id, 'v', 1);
    await within(new Promise<void>((resolve) => {
      const check = setInterval(() => onB.length === 1 && (clearInterval(check), resolve()), 10);
    }), 15_000, 'the committed set on the other node');
    await assert.rejects(store.transaction(id, async (tx) => {
      await tx.set('v', 'rolled back');
      throw new Error('changed my mind');
    }), /changed my mind/);
    await admin!.query(`CREATE OR REPLACE FUNCTION "${schema}".reject_poison() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.value = '"poison"'::jsonb THEN RAISE EXCEPTION 'poisoned value'; END IF; RETURN NEW; END $$`);
    await admin!.query(`CREATE CONSTRAINT TRIGGER reject_poison AFTER INSERT OR UPDATE ON "${schema}".variables
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION "${schema}".reject_poison()`);
    await assert.rejects(store.set(id, 'v', 'poison'), { code: 'HERALD_STORE', message: /poisoned value/ });
    // A change after them: once it has arrived, anything before it would have too.
    await store.set(id, 'v', 2);
    await within(new Promise<void>((resolve) => {
      const check = setInterval(() => onB.length >= 2 && (clearInterval(check), resolve()), 10);
    }), 15_000, 'the later set on the other node');
    await b.hub.drain();
    assert.deepEqual(onB, [1, 2], 'neither the rolled-back write nor the failed COMMIT reached the other node');
    const { rows } = await admin!.query<{ count: number }>(`SELECT count(*)::int AS count FROM "${schema}".outbox`);
    assert.equal(rows[0]!.count, 2, 'the outbox holds only what committed');
  });
});

clusterProperty(cluster);

describe('postgres backplane: review cases', { skip }, () => {
  function pairOn(t: TestContext, name: string, bUrl = urls.postgres, bOptions: BackplaneOptions = {}): { a: ClusteredHub; b: ClusteredHub; schema: string } {
    const trap = trapUnhandled();
    const schema = `herald_${name}_${process.pid}`;
    schemas.add(schema);
    const key = uniqueKey(name);
    const a = clusteredHub(new PostgresBackplane({ connectionString: urls.postgres, schema, pruneIntervalMs: 0 }), key);
    const b = clusteredHub(new PostgresBackplane({ connectionString: bUrl, schema, pruneIntervalMs: 0, onError: () => {}, reconnect: { maxDelayMs: 200 }, ...bOptions }), key);
    t.after(async () => {
      await Promise.all([a.hub.close(), b.hub.close()]);
      trap.stop();
      assert.deepEqual(trap.errors, [], 'no unhandled error or rejection');
    });
    return { a, b, schema };
  }

  test('an outbox INSERT lost with its pool connection (the listener stays up) is sent again before the changes notified after it', { timeout: 60_000 }, async (t) => {
    const proxy = await TcpProxy.start(urls.postgres);
    t.after(() => proxy.close());
    const { a, b } = pairOn(t, 'lostinsert', proxy.url(urls.postgres));
    await Promise.all([a.backplane.ready(), b.backplane.ready()]);
    const lost = proxy.loseQuery('INSERT INTO');
    b.hub.notify(b.key, 0, 1);
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    b.hub.notify(b.key, 1, 2);
    b.hub.notify(b.key, 2, 3);
    await within(lost, 10_000, 'the INSERT to be lost');
    await b.backplane.ready({ timeoutMs: 15_000 });
    await a.until((n) => n.changes.length >= 3, 'the three changes');
    await a.hub.drain();
    assert.deepEqual(a.changes.map((c) => c.newValue), [1, 2, 3], 'in the order notified, each once');
    const stats = b.hub.getStats().backplane!;
    assert.equal(stats.published, 3);
    assert.equal(stats.publishFailed, 0);
  });

  test('an outbox INSERT whose backend is terminated (57P01) is sent again, not counted as refused', { timeout: 60_000 }, async (t) => {
    const application = `herald-term-${process.pid}`;
    const { a, b } = pairOn(t, 'terminated', `${urls.postgres}?application_name=${application}`);
    await Promise.all([a.backplane.ready(), b.backplane.ready()]);
    // Holds the outbox's lock so that the INSERT waits on the server, where it can be terminated.
    const blocker = new pg.Client({ connectionString: urls.postgres });
    await blocker.connect();
    t.after(() => blocker.end());
    const schema = [...schemas].find((s) => s.startsWith('herald_terminated_'))!;
    await blocker.query('BEGIN');
    await blocker.query(`LOCK TABLE "${schema}".outbox IN EXCLUSIVE MODE`);
    b.hub.notify(b.key, 0, 1);
    await within((async () => {
      for (;;) {
        const { rows } = await admin!.query(`SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`, [application]);
        if (rows.length > 0) return;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })(), 10_000, 'the waiting INSERT to be terminated');
    await blocker.query('COMMIT');
    await a.until((n) => n.changes.length === 1, 'the change, sent again');
    await b.backplane.ready({ timeoutMs: 15_000 });
    assert.equal(b.hub.getStats().backplane!.publishFailed, 0);
  });

  test('a refused outbox row is counted once, as failed, not also as published', { timeout: 60_000 }, async (t) => {
    const { a, b, schema } = pairOn(t, 'refused');
    await Promise.all([a.backplane.ready(), b.backplane.ready()]);
    await admin!.query(`ALTER TABLE "${schema}".outbox ADD CONSTRAINT no_poison CHECK (key <> 'poison')`);
    b.hub.notify('poison', 0, 1);
    await b.backplane.ready({ timeoutMs: 15_000 });
    const stats = b.hub.getStats().backplane!;
    assert.equal(stats.published + stats.publishFailed + stats.publishDropped + stats.buffered, 1, 'one change, counted once');
    assert.equal(stats.publishFailed, 1);
  });

  test('a new observer is not handed changes made before it was registered', { timeout: 60_000 }, async (t) => {
    const { a, b } = pairOn(t, 'stale');
    await Promise.all([a.backplane.ready(), b.backplane.ready()]);
    const key = `${a.key}/price`;
    a.hub.notify(key, 100, 101);
    await a.backplane.ready();
    const seen: unknown[] = [];
    b.hub.observe(key, (change) => void seen.push(change.newValue));
    await b.backplane.ready();
    a.hub.notify(key, 101, 102);
    await a.backplane.ready();
    await within((async () => {
      while (seen.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    })(), 15_000, 'the later change');
    await b.hub.drain();
    assert.deepEqual(seen, [102]);
  });

  test('close() is bounded by closeTimeoutMs when an outbox INSERT never gets its reply, and a pending ready() rejects HERALD_CLOSED', { timeout: 60_000 }, async (t) => {
    const proxy = await TcpProxy.start(urls.postgres);
    t.after(() => proxy.close());
    const { b } = pairOn(t, 'closehang', proxy.url(urls.postgres), { closeTimeoutMs: 300 });
    await b.backplane.ready();
    const silent = proxy.silenceReply('INSERT INTO', 'SELECT');
    b.hub.notify(b.key, 0, 1);
    await within(silent, 10_000, 'the INSERT to go unanswered');
    const pending = assert.rejects(within(b.backplane.ready({ timeoutMs: Infinity }), 5000, 'ready() to settle'), { code: 'HERALD_CLOSED' });
    await within(b.hub.close(), 5000, 'close() despite the unanswered INSERT');
    await pending;
  });
});
