import assert from 'node:assert/strict';
import { after, before, test, type TestContext } from 'node:test';
import pg from 'pg';
import { ObserverManager, type Change, type SessionInfo } from '../../src/index.js';
import { PostgresSessionStore, withTransaction } from '../../src/postgres.js';
import { expectNoChange, storeSuite } from '../../src/testing.js';
import { within } from '../support/deadline.js';
import { TcpProxy } from '../support/proxy.js';

const url = process.env['HERALD_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Why PostgreSQL cannot be used, or undefined when it can. */
async function unreachable(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (error) {
    return (error as Error).message;
  } finally {
    await client.end().catch(() => {});
  }
}

const problem = await unreachable();
const inCi = process.env['CI'] === 'true';
// Without a server the tests skip and say why, except in CI, which requires one.
const skip = problem === undefined || inCi ? false : `PostgreSQL is unreachable at ${url} (${problem}): start it, or set HERALD_PG_URL`;
if (problem !== undefined && inCi) {
  test('PostgreSQL is reachable (CI requires it)', () => assert.fail(`PostgreSQL is unreachable at ${url}: ${problem}`));
}

const schema = `herald_t${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
let pool: pg.Pool;
let admin: pg.Pool;
const schemas = [schema];

before(() => {
  if (skip !== false || problem !== undefined) return;
  pool = new pg.Pool({ connectionString: url, max: 10 });
  pool.on('error', () => {});
  admin = new pg.Pool({ connectionString: url, max: 2 });
  admin.on('error', () => {});
});

after(async () => {
  if (admin === undefined) return;
  for (const name of schemas) await admin.query(`DROP SCHEMA IF EXISTS "${name}" CASCADE`);
  await pool.end();
  await admin.end();
});

storeSuite({
  name: 'PostgresSessionStore',
  skipAll: skip,
  create: (options) => new PostgresSessionStore({ ...options, pool, schema }),
});

function createHub(t: { after: (fn: () => unknown) => void }): ObserverManager {
  const hub = new ObserverManager({ sweepIntervalMs: 0, onError: () => {} });
  t.after(() => hub.close());
  return hub;
}

function createStore(t: { after: (fn: () => unknown) => void }, hub: ObserverManager, options: { schema?: string; pool?: pg.Pool } = {}): PostgresSessionStore {
  const store = new PostgresSessionStore({ hub, pool: options.pool ?? pool, schema: options.schema ?? schema, expiryCheckMs: 0 });
  t.after(() => store.close());
  return store;
}

let counter = 0;
const uniqueId = (): string => `pg-${++counter}`;

test('PostgresSessionStore - concurrent sets and transactions on many connections lose no update', { skip }, async (t) => {
  const hub = createHub(t);
  const stores = [createStore(t, hub), createStore(t, hub), createStore(t, hub)];
  const id = uniqueId();
  await stores[0]!.createSession(id);
  const counterChanges: Change[] = [];
  hub.observe(`session/${id}/counter`, (c) => void counterChanges.push(c));
  const work: Promise<unknown>[] = [];
  for (let i = 1; i <= 30; i++) work.push(stores[i % 3]!.set(id, 'n', i));
  for (let i = 0; i < 15; i++) {
    work.push(stores[i % 3]!.transaction(id, async (tx) => {
      const current = ((await tx.get('counter')) as number | undefined) ?? 0;
      await tx.set('counter', current + 1);
    }));
  }
  await Promise.all(work);
  await hub.drain();
  const variables = await stores[0]!.list(id);
  assert.deepEqual(variables.find((v) => v.name === 'counter'), { name: 'counter', value: 15, version: 15 });
  assert.equal(variables.find((v) => v.name === 'n')!.version, 30, 'every one of 30 distinct sets was a real change');
  assert.deepEqual(counterChanges.map((c) => c.meta['version']).sort((a, b) => (a as number) - (b as number)), Array.from({ length: 15 }, (_, i) => i + 1));
});

test('PostgresSessionStore - a failed COMMIT announces nothing and leaves the store unchanged', { skip }, async (t) => {
  const hub = createHub(t);
  const own = `${schema}_c`;
  schemas.push(own);
  const store = createStore(t, hub, { schema: own });
  const id = uniqueId();
  await store.createSession(id);
  await store.set(id, 'v', 'fine');
  // A deferred constraint: the statement succeeds, the COMMIT fails.
  await admin.query(`CREATE FUNCTION "${own}".reject_poison() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN IF NEW.value = '"poison"'::jsonb THEN RAISE EXCEPTION 'poisoned value'; END IF; RETURN NEW; END $$`);
  await admin.query(`CREATE CONSTRAINT TRIGGER reject_poison AFTER INSERT OR UPDATE ON "${own}".variables
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION "${own}".reject_poison()`);
  await expectNoChange(hub, `session/${id}/v`, async () => {
    await assert.rejects(store.set(id, 'v', 'poison'), { code: 'HERALD_STORE', message: /poisoned value/ });
  });
  assert.equal(await store.get(id, 'v'), 'fine');
  assert.equal((await store.list(id))[0]!.version, 1);
});

test('PostgresSessionStore - a connection killed mid-transaction announces nothing and leaves the store unchanged', { skip }, async (t) => {
  const hub = createHub(t);
  const application = `herald-kill-${process.pid}`;
  const own = new pg.Pool({ connectionString: url, application_name: application, max: 2 });
  own.on('error', () => {});
  t.after(() => own.end());
  const store = createStore(t, hub, { pool: own });
  const id = uniqueId();
  await store.createSession(id);
  await store.set(id, 'a', 1);
  await expectNoChange(hub, `session/${id}/a`, async () => {
    await assert.rejects(store.transaction(id, async (tx) => {
      await tx.set('a', 2);
      const { rows } = await admin.query<{ killed: boolean }>(
        `SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE application_name = $1 AND state LIKE 'idle in transaction%'`, [application],
      );
      assert.deepEqual(rows.map((r) => r.killed), [true]);
      await tx.set('b', 3);
    }), { code: 'HERALD_STORE' });
  });
  assert.equal(await store.get(id, 'a'), 1);
  assert.deepEqual((await store.list(id)).map((v) => v.name), ['a']);
});

test('withTransaction() - a serialization failure announces nothing; the transaction that won announces once', { skip }, async (t) => {
  const hub = createHub(t);
  const table = `"${schema}".serial_${process.pid}`;
  await admin.query(`CREATE TABLE ${table} (id int PRIMARY KEY, n int NOT NULL)`);
  await admin.query(`INSERT INTO ${table} VALUES (1, 0)`);
  const seen: unknown[] = [];
  hub.observe('counter/1', (c) => void seen.push(c.newValue));
  let firstRead!: () => void;
  const readDone = new Promise<void>((resolve) => (firstRead = resolve));
  let winnerCommitted!: () => void;
  const committed = new Promise<void>((resolve) => (winnerCommitted = resolve));
  const loser = withTransaction(pool, hub, async (client, pending) => {
    const { rows } = await client.query<{ n: number }>(`SELECT n FROM ${table} WHERE id = 1`);
    firstRead();
    await within(committed, 15_000, 'the winning transaction to commit');
    await client.query(`UPDATE ${table} SET n = $1 WHERE id = 1`, [rows[0]!.n + 10]);
    pending.notify('counter/1', rows[0]!.n, rows[0]!.n + 10);
  }, { isolationLevel: 'serializable' });
  await within(readDone, 15_000, 'the losing transaction to read');
  await withTransaction(pool, hub, async (client, pending) => {
    const { rows } = await client.query<{ n: number }>(`UPDATE ${table} SET n = n + 1 WHERE id = 1 RETURNING n`);
    pending.notify('counter/1', rows[0]!.n - 1, rows[0]!.n);
  }, { isolationLevel: 'serializable' });
  winnerCommitted();
  await assert.rejects(loser, { code: '40001' });
  await hub.drain();
  assert.deepEqual(seen, [1]);
});

test('withTransaction() - a registry\'s cache, kept by mutation observers, never serves a rolled-back value', { skip }, async (t) => {
  const hub = createHub(t);
  const table = `"${schema}".registry_${process.pid}`;
  await admin.query(`CREATE TABLE ${table} (id text PRIMARY KEY, name text NOT NULL UNIQUE DEFERRABLE INITIALLY DEFERRED)`);
  // The registry: every mutation queues its change; the cache follows the announcements.
  const cache = new Map<string, string>();
  hub.observePattern('registry/*', (change) => {
    const id = change.key.slice('registry/'.length);
    if (change.newValue === undefined) cache.delete(id);
    else cache.set(id, change.newValue as string);
  });
  const rename = (id: string, name: string, then?: () => void): Promise<void> =>
    withTransaction(pool, hub, async (client, pending) => {
      const { rows } = await client.query<{ old: string | null }>(
        `INSERT INTO ${table} (id, name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name
         RETURNING (SELECT name FROM ${table} WHERE id = $1) AS old`, [id, name],
      );
      pending.notify(`registry/${id}`, rows[0]!.old ?? undefined, name);
      then?.();
    });
  await rename('a1', 'alpha');
  await hub.drain();
  assert.deepEqual([...cache], [['a1', 'alpha']]);
  // Rolled back by the code: never announced.
  await assert.rejects(rename('a1', 'beta', () => { throw new Error('validation failed after the write'); }), /validation failed/);
  // Rolled back by the database at COMMIT (the deferred unique constraint): never announced.
  await assert.rejects(rename('b2', 'alpha'), { code: '23505' });
  await hub.drain();
  assert.deepEqual([...cache], [['a1', 'alpha']]);
  const { rows } = await admin.query<{ id: string; name: string }>(`SELECT id, name FROM ${table} ORDER BY id`);
  assert.deepEqual(rows.map((r) => [r.id, r.name]), [['a1', 'alpha']]);
});

test('PostgresSessionStore - JSON null is a value, distinct from a variable defined but never set', { skip }, async (t) => {
  const hub = createHub(t);
  const store = createStore(t, hub);
  const id = uniqueId();
  await store.createSession(id);
  await store.defineVariable(id, 'unset');
  await store.set(id, 'nothing', null);
  assert.deepEqual(await store.list(id), [{ name: 'nothing', value: null, version: 1 }, { name: 'unset', value: undefined, version: 0 }]);
});

test('PostgresSessionStore - bad options are refused with coded errors', { skip }, (t) => {
  const hub = createHub(t);
  assert.throws(() => new PostgresSessionStore({ hub, pool, schema: 'Robert"); DROP TABLE' }), { code: 'HERALD_INVALID_OPTION', message: /`options.schema`/ });
  assert.throws(() => new PostgresSessionStore({ hub, connectionString: '' }), { code: 'HERALD_INVALID_OPTION', message: /`options.connectionString`/ });
  assert.throws(() => new PostgresSessionStore({ hub, pool: {} as pg.Pool }), { code: 'HERALD_INVALID_OPTION', message: /`options.pool`/ });
  for (const commitCheckMs of [0, -1, 1.5, 2 ** 31, Infinity, '100']) {
    assert.throws(() => new PostgresSessionStore({ hub, pool, commitCheckMs: commitCheckMs as number }), { code: 'HERALD_INVALID_OPTION', message: /`options.commitCheckMs`/ });
  }
});

test('PostgresSessionStore - with the server gone after start-up, every operation rejects with HERALD_STORE, never a raw driver error', { skip }, async (t) => {
  const hub = createHub(t);
  const proxy = await TcpProxy.start(url);
  t.after(() => proxy.close());
  const store = new PostgresSessionStore({ hub, connectionString: proxy.url(url), schema, expiryCheckMs: 0 });
  t.after(() => store.close());
  await store.createSession(uniqueId()); // the tables exist and the store has worked
  proxy.cut();
  const operations: [string, () => Promise<unknown>][] = [
    ['createSession', () => store.createSession('s')],
    ['getSession', () => store.getSession('s')],
    ['listSessions', () => store.listSessions()],
    ['touch', () => store.touch('s')],
    ['get', () => store.get('s', 'n')],
    ['list', () => store.list('s')],
    ['set', () => store.set('s', 'n', 1)],
    ['watch', () => store.watch('s', 'n', () => {})],
    ['expireSessions', () => store.expireSessions()],
    ['transaction', () => store.transaction('s', () => undefined)],
  ];
  for (const [name, run] of operations) {
    await assert.rejects(within(run(), 10_000, name), { code: 'HERALD_STORE' }, name);
  }
});

test('withTransaction() - bad options, null included, are refused with coded errors before anything runs', { skip }, async (t) => {
  const hub = createHub(t);
  let ran = false;
  for (const options of [null, 'serializable', { isolationLevel: 'chaos' }, { commitCheckMs: 0 }, { commitCheckMs: 2 ** 31 }]) {
    await assert.rejects(withTransaction(pool, hub, () => void (ran = true), options as never), { code: 'HERALD_INVALID_OPTION' });
  }
  assert.equal(ran, false);
});

test('PostgresSessionStore - the expiry sweep finds expired sessions through an index on expires_at', { skip }, async (t) => {
  const hub = createHub(t);
  const store = createStore(t, hub);
  await store.createSession(uniqueId());
  const { rows } = await admin.query<{ indexdef: string }>('SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2', [schema, 'sessions']);
  assert.ok(rows.some((row) => /\(expires_at\)/.test(row.indexdef)), JSON.stringify(rows));
});

test('PostgresSessionStore - a session deleted by another process ends this process\'s watchers at the next sweep', { skip }, async (t) => {
  const here = createStore(t, createHub(t));
  const elsewhere = createStore(t, createHub(t)); // another process: its own hub, the same tables
  const id = uniqueId();
  await here.createSession(id);
  const reasons: string[] = [];
  let ended!: () => void;
  const closed = new Promise<void>((resolve) => (ended = resolve));
  const sub = await here.watchSession(id, () => {}, { onClose: (reason) => { reasons.push(reason); ended(); } });
  assert.equal(await elsewhere.deleteSession(id), true);
  assert.equal(sub.active, true, 'nothing told this process yet');
  await here.expireSessions();
  await within(closed, 5000, 'the watcher to end');
  assert.deepEqual(reasons, ['session-ended']);
});

/** A store whose every connection goes through a proxy that can break one chosen query, and a session on it. */
async function proxiedStore(t: TestContext, hub: ObserverManager, options: { commitCheckMs?: number } = {}): Promise<{ store: PostgresSessionStore; proxy: TcpProxy; id: string }> {
  const proxy = await TcpProxy.start(url);
  t.after(() => proxy.close());
  const store = new PostgresSessionStore({ hub, connectionString: proxy.url(url), schema, expiryCheckMs: 0, ...options });
  t.after(() => store.close());
  // A session whose variable v is at version 1: where each test's lost COMMIT starts.
  const id = uniqueId();
  await store.createSession(id);
  await store.set(id, 'v', 1);
  return { store, proxy, id };
}

test('PostgresSessionStore - a write whose COMMIT reply is lost after it committed is announced and returned as made', { skip }, async (t) => {
  const hub = createHub(t);
  const { store, proxy, id } = await proxiedStore(t, hub);
  const seen: Change[] = [];
  hub.observe(`session/${id}/v`, (change) => void seen.push(change));
  const lost = proxy.loseReply('COMMIT\0', 'COMMIT\0');
  const result = await within(store.set(id, 'v', 2), 15_000, 'the set to resolve its lost COMMIT');
  await lost;
  assert.deepEqual(result, { oldValue: 1, newValue: 2, version: 2 });
  await hub.drain();
  assert.deepEqual(seen.map((c) => [c.oldValue, c.newValue, c.meta['version']]), [[1, 2, 2]]);
  assert.deepEqual(await store.list(id), [{ name: 'v', value: 2, version: 2 }]);
});

test('PostgresSessionStore - a transaction whose COMMIT never reached the server rejects HERALD_STORE, announces nothing and changes nothing', { skip }, async (t) => {
  const hub = createHub(t);
  const { store, proxy, id } = await proxiedStore(t, hub);
  await expectNoChange(hub, `session/${id}/v`, async () => {
    const lost = proxy.loseQuery('COMMIT\0');
    await assert.rejects(within(store.transaction(id, (tx) => tx.set('v', 2)), 15_000, 'the transaction to resolve its lost COMMIT'), {
      code: 'HERALD_STORE', message: /rolled the transaction back/,
    });
    await lost;
  });
  assert.deepEqual(await store.list(id), [{ name: 'v', value: 1, version: 1 }]);
});

test('PostgresSessionStore - a COMMIT whose outcome the server cannot be asked about rejects HERALD_IN_DOUBT after commitCheckMs, never "rolled back"', { skip }, async (t) => {
  const hub = createHub(t);
  const { store, proxy, id } = await proxiedStore(t, hub, { commitCheckMs: 300 });
  const lost = proxy.loseReply('COMMIT\0', 'COMMIT\0').then(() => proxy.cut());
  await assert.rejects(within(store.set(id, 'v', 2), 10_000, 'the set to give up on its lost COMMIT'), {
    code: 'HERALD_IN_DOUBT', message: /may have/,
  });
  await lost;
  proxy.restore();
  assert.equal(await store.get(id, 'v'), 2, 'it had committed: the error said it may have');
});

/** A pool whose connections go through a proxy that can break one chosen query, and a table of the test's own. */
async function proxiedPool(t: TestContext, name: string): Promise<{ proxy: TcpProxy; proxied: pg.Pool; table: string }> {
  const proxy = await TcpProxy.start(url);
  t.after(() => proxy.close());
  const proxied = new pg.Pool({ connectionString: proxy.url(url), max: 2 });
  proxied.on('error', () => {});
  t.after(() => proxied.end());
  const table = `"${schema}".${name}_${process.pid}`;
  await admin.query(`CREATE TABLE ${table} (id int PRIMARY KEY, name text)`);
  return { proxy, proxied, table };
}

test('withTransaction() - a transaction whose COMMIT reply is lost after it committed is announced, and returns its result', { skip }, async (t) => {
  const hub = createHub(t);
  const { proxy, proxied, table } = await proxiedPool(t, 'doubt');
  const seen: Change[] = [];
  hub.observe('registry/1', (change) => void seen.push(change));
  const lost = proxy.loseReply('COMMIT\0', 'COMMIT\0');
  const result = await within(withTransaction(proxied, hub, async (client, pending) => {
    await client.query(`INSERT INTO ${table} VALUES (1, 'printers')`);
    pending.notify('registry/1', undefined, 'printers');
    return 'done';
  }), 15_000, 'withTransaction to resolve its lost COMMIT');
  await lost;
  assert.equal(result, 'done');
  await hub.drain();
  assert.deepEqual(seen.map((c) => c.newValue), ['printers']);
  assert.deepEqual((await admin.query(`SELECT name FROM ${table}`)).rows, [{ name: 'printers' }]);
});

test('withTransaction() - a COMMIT that never reached the server rejects, and nothing is announced or written', { skip }, async (t) => {
  const hub = createHub(t);
  const { proxy, proxied, table } = await proxiedPool(t, 'doubt2');
  await expectNoChange(hub, 'registry/2', async () => {
    const lost = proxy.loseQuery('COMMIT\0');
    await assert.rejects(within(withTransaction(proxied, hub, async (client, pending) => {
      await client.query(`INSERT INTO ${table} VALUES (2, 'printers')`);
      pending.notify('registry/2', undefined, 'printers');
    }), 15_000, 'withTransaction to resolve its lost COMMIT'), { code: 'HERALD_STORE', message: /rolled the transaction back/ });
    await lost;
  });
  assert.deepEqual((await admin.query(`SELECT name FROM ${table}`)).rows, []);
});

/** Resolves once the clock has moved past `since` (a session's `createdAt` is in milliseconds). */
async function pastMillisecond(since: number): Promise<void> {
  while (Date.now() <= since) await new Promise((resolve) => setImmediate(resolve));
}

test('PostgresSessionStore - a session deleted and made again by another process ends this process\'s watchers of the old one, not those of the new one', { skip }, async (t) => {
  const here = createStore(t, createHub(t));
  const elsewhere = createStore(t, createHub(t));
  const id = uniqueId();
  const first = await here.createSession(id);
  const reasons: string[] = [];
  let ended!: () => void;
  const closed = new Promise<void>((resolve) => (ended = resolve));
  const old = await here.watch(id, 'v', () => {}, { onClose: (reason) => { reasons.push(reason); ended(); } });
  assert.equal(await elsewhere.deleteSession(id), true);
  await pastMillisecond(first.createdAt);
  await elsewhere.createSession(id);
  await here.expireSessions();
  await within(closed, 5000, 'the old session\'s watcher to end');
  assert.deepEqual(reasons, ['session-ended']);
  // A watcher of the new session, made here after that, lives on through the next sweep.
  const fresh = await here.watch(id, 'v', () => {});
  await here.expireSessions();
  await here.hub.drain();
  assert.equal(old.active, false);
  assert.equal(fresh.active, true);
});

test('PostgresSessionStore - watching a session made again by another process ends the watchers of the old one at once', { skip }, async (t) => {
  const here = createStore(t, createHub(t));
  const elsewhere = createStore(t, createHub(t));
  const id = uniqueId();
  const first = await here.createSession(id);
  let ended!: () => void;
  const closed = new Promise<void>((resolve) => (ended = resolve));
  const old = await here.watch(id, 'v', () => {}, { onClose: () => ended() });
  await elsewhere.deleteSession(id);
  await pastMillisecond(first.createdAt);
  await elsewhere.createSession(id);
  const fresh = await here.watch(id, 'v', () => {});
  await within(closed, 5000, 'the old session\'s watcher to end');
  assert.equal(old.active, false);
  assert.equal(fresh.active, true);
  await here.expireSessions();
  await here.hub.drain();
  assert.equal(fresh.active, true, 'the sweep knows the new session is the one watched');
});

test('PostgresSessionStore - a COMMIT whose reply never comes on a connection that stays open is looked into after commitCheckMs, announced, and later writes follow it in order', { skip }, async (t) => {
  const hub = createHub(t);
  const { store, proxy, id } = await proxiedStore(t, hub, { commitCheckMs: 300 });
  const seen: unknown[] = [];
  hub.observe(`session/${id}/v`, (change) => void seen.push(change.newValue));
  const silenced = proxy.silenceReply('COMMIT\0', 'COMMIT\0');
  const first = store.set(id, 'v', 2);
  await silenced;
  const second = store.set(id, 'v', 3);
  assert.deepEqual(await within(first, 10_000, 'the silent COMMIT to be looked into'), { oldValue: 1, newValue: 2, version: 2 });
  assert.equal((await within(second, 10_000, 'the write after it')).version, 3);
  await hub.drain();
  assert.deepEqual(seen, [2, 3]);
});

test('PostgresSessionStore - the check of a lost COMMIT gives up after commitCheckMs when the server accepts connections and never answers', { skip }, async (t) => {
  const hub = createHub(t);
  const { store, proxy, id } = await proxiedStore(t, hub, { commitCheckMs: 300 });
  const lost = proxy.loseReply('COMMIT\0', 'COMMIT\0').then(() => proxy.stall());
  await assert.rejects(within(store.set(id, 'v', 2), 10_000, 'the check to give up'), { code: 'HERALD_IN_DOUBT' });
  await lost;
  proxy.release();
});

test('withTransaction() - a transaction that committed while the hub closed returns its result and announces nothing', { skip }, async (t) => {
  const hub = createHub(t);
  const table = `"${schema}".closing_${process.pid}`;
  await admin.query(`CREATE TABLE ${table} (id int PRIMARY KEY)`);
  const result = await withTransaction(pool, hub, async (client, pending) => {
    await client.query(`INSERT INTO ${table} VALUES (1)`);
    pending.notify('registry/closing', undefined, 1);
    await hub.close();
    return 'committed';
  });
  assert.equal(result, 'committed');
  assert.deepEqual((await admin.query(`SELECT id FROM ${table}`)).rows, [{ id: 1 }]);
});

test('withTransaction() - a transaction whose COMMIT reply is lost announces before one that committed after it', { skip }, async (t) => {
  const hub = createHub(t);
  const { proxy, proxied, table } = await proxiedPool(t, 'order');
  await admin.query(`INSERT INTO ${table} VALUES (1, 'start')`);
  const seen: unknown[] = [];
  hub.observe('registry/order', (change) => void seen.push(change.newValue));
  const rename = (through: pg.Pool, name: string): Promise<void> => withTransaction(through, hub, async (client, pending) => {
    await client.query(`UPDATE ${table} SET name = $1 WHERE id = 1`, [name]);
    pending.notify('registry/order', undefined, name);
  });
  // A's reply is lost, and the check of it waits (the proxy holds new connections) while B commits after A.
  const lost = proxy.loseReply('COMMIT\0', 'COMMIT\0').then(() => proxy.stall());
  const a = rename(proxied, 'A');
  await lost;
  const b = rename(pool, 'B');
  await within(committed(`SELECT 1 FROM ${table} WHERE name = 'B'`), 10_000, 'B to commit');
  await hub.drain();
  assert.deepEqual(seen, [], 'B has committed, and waits to announce after A, which committed first');
  proxy.release();
  await within(Promise.all([a, b]), 15_000, 'A to be looked into, then B to announce');
  await hub.drain();
  assert.deepEqual(seen, ['A', 'B']);
  assert.deepEqual((await admin.query(`SELECT name FROM ${table}`)).rows, [{ name: 'B' }]);
});

/** Resolves once `query` returns a row (asked again every 20 ms): for a commit made by work still running. */
async function committed(query: string): Promise<void> {
  while ((await admin.query(query)).rows.length === 0) await new Promise((resolve) => setTimeout(resolve, 20));
}

/** A store whose session reads can be held back, to order them against other work. */
class HeldReadStore extends PostgresSessionStore {
  hold: Promise<void> | undefined;
  protected override async doGetSession(sessionId: string): Promise<SessionInfo | undefined> {
    const info = await super.doGetSession(sessionId);
    const hold = this.hold;
    if (hold !== undefined) {
      this.hold = undefined;
      await hold;
    }
    return info;
  }
}

test('PostgresSessionStore - a watch whose session read is stale (the session was made again meanwhile) does not end the watchers of the new one', { skip }, async (t) => {
  const here = new HeldReadStore({ hub: createHub(t), pool, schema, expiryCheckMs: 0 });
  t.after(() => here.close());
  const elsewhere = createStore(t, createHub(t));
  const id = uniqueId();
  const first = await here.createSession(id);
  let release!: () => void;
  here.hold = new Promise((resolve) => (release = resolve));
  const stale = here.watch(id, 'v', () => {}); // reads the first session, then waits
  await elsewhere.deleteSession(id);
  await pastMillisecond(first.createdAt);
  await elsewhere.createSession(id);
  const fresh = await here.watch(id, 'v', () => {});
  release();
  const late = await within(stale, 5000, 'the held watch');
  await here.hub.drain();
  assert.equal(fresh.active, true, 'the watcher of the live session lives on');
  assert.equal(late.active, true, 'the held watch read again and watches the live session');
  await here.expireSessions();
  await here.hub.drain();
  assert.equal(fresh.active && late.active, true);
});

test('PostgresSessionStore: backends terminated by an administrator while writes run fail those writes with HERALD_STORE, and the process goes on', { skip, timeout: 60_000 }, async () => {
  const name = `herald_t${process.pid}_kill`;
  schemas.push(name);
  const hub = new ObserverManager();
  // Its own pool, tagged, so only its backends are terminated.
  const store = new PostgresSessionStore({ hub, connectionString: `${url}?application_name=${name}`, schema: name });
  const crashes: unknown[] = [];
  const onCrash = (error: unknown): void => void crashes.push(error);
  process.on('uncaughtException', onCrash);
  try {
    await store.createSession('s');
    let stop = false;
    let kills = 0;
    const codes = new Set<string>();
    const killer = (async () => {
      for (let round = 0; round < 150; round++) {
        kills += Number((await admin.query('SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE application_name = $1', [name])).rows[0].n);
        await new Promise((resolve) => setTimeout(resolve, round % 10));
      }
      stop = true;
    })();
    const writers = Array.from({ length: 4 }, async () => {
      for (let i = 0; !stop; i++) {
        try {
          await store.set('s', 'a', i);
        } catch (error) {
          codes.add((error as { code?: string }).code ?? 'none');
        }
      }
    });
    await killer;
    await Promise.all(writers);
    assert.ok(kills > 0, 'backends were terminated');
    assert.deepEqual(crashes, [], 'no error escaped as an uncaught exception');
    assert.deepEqual([...codes].filter((code) => code !== 'HERALD_STORE' && code !== 'HERALD_IN_DOUBT'), [], 'failed writes say HERALD_STORE');
    // And the store works once the terminations stop.
    assert.equal((await store.set('s', 'after', 1)).version, 1);
  } finally {
    process.off('uncaughtException', onCrash);
    await store.close();
    await hub.close();
  }
});
