import assert from 'node:assert/strict';
import { setImmediate as nextTask } from 'node:timers/promises';
import {
  ObserverManager, variableKey, type Change, type CloseReason, type HubOptions, type SessionStoreLike, type StandardSchemaV1, type StoreOptions,
} from '../../index.js';
import { expectNoChange } from '../expect-no-change.js';
import { CaseRun, nodeTestRunner, registerSkipped, within, type SuiteRunner } from './runner.js';

/** Options of {@link storeSuite}. */
export interface StoreSuiteOptions {
  /** Shown in the suite's title. */
  readonly name: string;
  /** Makes a fresh store on `hub`; the suite closes it (and the hub) after each test. */
  readonly create: (options: Omit<StoreOptions, 'expiryCheckMs'> & { expiryCheckMs: number }) => SessionStoreLike | Promise<SessionStoreLike>;
  /** Skips the whole suite, with the reason; `false` or omitted runs it. */
  readonly skipAll?: string | false;
  /** The test runner to register the tests with. @default node:test */
  readonly runner?: SuiteRunner;
  /** How long one test may take, cleanup aside, before it fails; every drain inside a test has its own, shorter deadline too. @default 30000 */
  readonly timeoutMs?: number;
}

/** What each test of the suite is given. */
interface StoreCase {
  /**
   * A fresh hub (closed after the test; an error reaching its onError fails
   * the test) and a fresh store on it (closed after the test).
   */
  readonly make: (extra?: Partial<StoreOptions>, hubOptions?: HubOptions) => Promise<{ hub: ObserverManager; store: SessionStoreLike }>;
}

/** `hub.drain()`, with a deadline. */
function drain(hub: ObserverManager): Promise<void> {
  return within(hub.drain(), 5000, 'hub.drain() to resolve');
}

/** A minimal Standard Schema validator: a number between 0 and 100. */
const percent: StandardSchemaV1<unknown, number> = {
  '~standard': {
    version: 1,
    vendor: 'herald-suite',
    validate: (value) =>
      typeof value === 'number' && value >= 0 && value <= 100 ? { value } : { issues: [{ message: 'expected a number from 0 to 100' }] },
  },
};

let counter = 0;
const uniqueId = (): string => `s-${process.pid}-${++counter}`;

/** An `onClose` that records the reasons, and a wait, with a deadline, for the first one. */
function closes(): { readonly reasons: CloseReason[]; readonly onClose: (reason: CloseReason) => void; readonly ended: () => Promise<void> } {
  const reasons: CloseReason[] = [];
  let closed!: () => void;
  const first = new Promise<void>((resolve) => (closed = resolve));
  return {
    reasons,
    onClose: (reason) => {
      reasons.push(reason);
      closed();
    },
    ended: () => within(first, 5000, 'the watcher to end (its onClose to be called)'),
  };
}

/** Waits, without a timing margin, until the clock has passed `at`. */
async function clockPast(at: number): Promise<void> {
  while (Date.now() <= at) await nextTask();
}

/**
 * The session store contract of DESIGN.md sections 3 and 4 as tests, for
 * node:test (the default) or any runner given as `runner`.
 *
 * @example
 * ```ts
 * // node:test
 * storeSuite({ name: 'mine', create: (options) => new MyStore(options) });
 * // vitest
 * import { describe, test } from 'vitest';
 * storeSuite({ name: 'mine', create: (options) => new MyStore(options), runner: { describe, test } });
 * ```
 */
export function storeSuite(options: StoreSuiteOptions): void {
  const runner = options.runner ?? nodeTestRunner();
  const timeoutMs = options.timeoutMs ?? 30_000;
  const skipAll = options.skipAll === undefined || options.skipAll === false ? undefined : options.skipAll;
  const test = (name: string, fn: (c: StoreCase) => Promise<void>): void => {
    if (skipAll !== undefined) {
      registerSkipped(runner, name, skipAll);
      return;
    }
    runner.test(name, () => {
      const run = new CaseRun();
      const make = async (extra: Partial<StoreOptions> = {}, hubOptions: HubOptions = {}): Promise<{ hub: ObserverManager; store: SessionStoreLike }> => {
        const hub = new ObserverManager({ sweepIntervalMs: 0, onError: run.recordError, ...hubOptions });
        run.onCleanup(() => hub.close());
        const store = await options.create({ hub, expiryCheckMs: 0, ...extra });
        run.onCleanup(() => store.close());
        return { hub, store };
      };
      return run.run(name, timeoutMs, () => fn({ make }));
    });
  };
  const collectAll = (hub: ObserverManager, pattern = 'session/**'): Change[] => {
    const seen: Change[] = [];
    hub.observePattern(pattern, (change) => void seen.push(change));
    return seen;
  };

  runner.describe(`store conformance: ${options.name}`, () => {
    test('sessions - create, get, list, touch and delete', async ({ make }) => {
      const { store } = await make();
      const id = uniqueId();
      const info = await store.createSession(id, { ttlMs: 60_000, meta: { user: 'ada' } });
      assert.equal(info.id, id);
      assert.deepEqual(info.meta, { user: 'ada' });
      assert.ok(info.expiresAt! > Date.now());
      assert.deepEqual(await store.getSession(id), info);
      assert.ok((await store.listSessions()).some((s) => s.id === id));
      const touched = await store.touch(id, 120_000);
      assert.ok(touched.expiresAt! >= info.expiresAt!);
      await assert.rejects(store.createSession(id), { code: 'HERALD_SESSION_EXISTS' });
      assert.equal(await store.deleteSession(id), true);
      assert.equal(await store.deleteSession(id), false);
      assert.equal(await store.getSession(id), undefined);
    });

    test('set() - returns old and new values and a version that grows by one per real change', async ({ make }) => {
      const { hub, store } = await make();
      const id = uniqueId();
      await store.createSession(id);
      const seen = collectAll(hub);
      assert.deepEqual(await store.set(id, 'mode', 'on'), { oldValue: undefined, newValue: 'on', version: 1 });
      assert.deepEqual(await store.set(id, 'mode', 'eco', { by: 'test' }), { oldValue: 'on', newValue: 'eco', version: 2 });
      assert.equal(await store.get(id, 'mode'), 'eco');
      await drain(hub);
      assert.deepEqual(seen.map((c) => [c.oldValue, c.newValue, c.meta['version']]), [[undefined, 'on', 1], ['on', 'eco', 2]]);
      assert.deepEqual({ ...seen[1]!.meta }, { by: 'test', sessionId: id, name: 'mode', version: 2 });
      assert.deepEqual(await store.list(id), [{ name: 'mode', value: 'eco', version: 2 }]);
    });

    test('set() - an equal value announces nothing and keeps the version', async ({ make }) => {
      const { hub, store } = await make();
      const id = uniqueId();
      await store.createSession(id);
      await store.set(id, 'cfg', { a: 1, b: [1, 2] });
      await expectNoChange(hub, variableKey(id, 'cfg'), async () => {
        assert.deepEqual(await store.set(id, 'cfg', { b: [1, 2], a: 1 }), { oldValue: { a: 1, b: [1, 2] }, newValue: { a: 1, b: [1, 2] }, version: 1 });
      });
    });

    test('set() - stores a copy: the caller changing its object later changes nothing', async ({ make }) => {
      const { store } = await make();
      const id = uniqueId();
      await store.createSession(id);
      const value = { items: [1, 2] };
      await store.set(id, 'cart', value);
      value.items.push(3);
      assert.deepEqual(await store.get(id, 'cart'), { items: [1, 2] });
    });

    test('delete() - removes a variable and announces its removal once', async ({ make }) => {
      const { hub, store } = await make();
      const id = uniqueId();
      await store.createSession(id);
      await store.set(id, 'x', 1);
      const seen = collectAll(hub);
      assert.equal(await store.delete(id, 'x'), true);
      assert.equal(await store.delete(id, 'x'), false);
      await drain(hub);
      assert.deepEqual(seen.map((c) => [c.oldValue, c.newValue]), [[1, undefined]]);
      assert.equal(await store.get(id, 'x'), undefined);
    });

    test('watch() - delivers the changes of one variable; watchSession() those of every variable', async ({ make }) => {
      const { hub, store } = await make();
      const id = uniqueId();
      await store.createSession(id);
      const one: unknown[] = [];
      const all: string[] = [];
      await store.watch(id, 'a', (c) => void one.push(c.newValue));
      await store.watchSession(id, (c) => void all.push(`${String(c.meta['name'])}=${JSON.stringify(c.newValue)}`));
      await store.set(id, 'a', 1);
      await store.set(id, 'b', 2);
      await drain(hub);
      assert.deepEqual(one, [1]);
      assert.deepEqual(all, ['a=1', 'b=2']);
    });

    test('watch() - includeCurrent delivers the current value first, then every later change', async ({ make }) => {
      const { hub, store } = await make();
      const id = uniqueId();
      await store.createSession(id);
      await store.set(id, 'n', 1);
      const seen: Change[] = [];
      await store.watch(id, 'n', (c) => void seen.push(c), { includeCurrent: true });
      await store.set(id, 'n', 2);
      await drain(hub);
      assert.deepEqual(seen.map((c) => [c.newValue, c.meta['version'], c.meta['current'] ?? false]), [[1, 1, true], [2, 2, false]]);
    });

    test('watchSession() - includeCurrent delivers every current value, whatever the watcher\'s queue bound', async ({ make }) => {
      const { hub, store } = await make();
      const id = uniqueId();
      await store.createSession(id);
      await store.transaction(id, async (tx) => {
        for (let i = 0; i < 1500; i++) await tx.set(`v${i}`, i);
      });
      const names = new Set<string>();
      const closed: CloseReason[] = [];
      const sub = await store.watchSession(id, (c) => void names.add(c.meta['name'] as string), {
        includeCurrent: true, queue: { limit: 2, overflow: 'disconnect' }, onClose: (reason) => void closed.push(reason),
      });
      await drain(hub);
      assert.equal(names.size, 1500);
      assert.deepEqual(closed, []);
      assert.equal(sub.active, true);
      sub.unsubscribe();
    });

    test('watch() - includeCurrent goes through the watcher\'s own queue: a callback hanging on the current value times out, and later changes arrive', async ({ make }) => {
      const failures: unknown[] = [];
      const { hub, store } = await make({}, { callbackTimeoutMs: 50, onError: (error) => void failures.push(error) });
      const id = uniqueId();
      await store.createSession(id);
      await store.set(id, 'n', 1);
      const seen: unknown[] = [];
      await store.watch(id, 'n', (c) => {
        seen.push(c.newValue);
        return c.meta['current'] === true ? new Promise<void>(() => {}) : undefined; // hangs on the current value only
      }, { includeCurrent: true });
      await store.set(id, 'n', 2);
      await drain(hub);
      assert.deepEqual(seen, [1, 2]);
      assert.equal(hub.getStats().deliveryTimeouts, 1);
      assert.deepEqual(failures.map((e) => (e as { code?: string }).code), ['HERALD_TIMEOUT']);
    });

    test('transaction() - rejects with exactly what the function threw, untouched, and nothing is written or announced', async ({ make }) => {
      const { hub, store } = await make();
      const id = uniqueId();
      await store.createSession(id);
      await store.set(id, 'n', 1);
      const mine = new Error('the caller\'s own');
      await expectNoChange(hub, variableKey(id, 'n'), async () => {
        await assert.rejects(store.transaction(id, async (tx) => {
          await tx.set('n', 2);
          throw mine;
        }), (error) => error === mine);
        const odd = { not: 'an Error' };
        // A rejection with something that is not an Error: users do it, and it too must come back as it was.
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
        await assert.rejects(store.transaction(id, () => Promise.reject(odd)), (error) => error === odd);
      });
      assert.equal(await store.get(id, 'n'), 1);
    });

    test('ids, names and values - one rule for both stores: lone surrogates, NUL, -0, symbol keys, deep nesting and throwing getters are refused up front, nothing written', async ({ make }) => {
      const { store } = await make();
      const id = uniqueId();
      await store.createSession(id);
      for (const bad of ['\uD800', 'a\uDFFFb', 'nul\u0000']) {
        await assert.rejects(store.createSession(bad), { code: 'HERALD_INVALID_ARGUMENT' }, `session id ${JSON.stringify(bad)}`);
        await assert.rejects(store.set(id, bad, 1), { code: 'HERALD_INVALID_ARGUMENT' }, `name ${JSON.stringify(bad)}`);
        await assert.rejects(store.set(id, 'v', bad), { code: 'HERALD_UNSERIALIZABLE' }, `value ${JSON.stringify(bad)}`);
        await assert.rejects(store.set(id, 'v', { [bad]: 1 }), { code: 'HERALD_UNSERIALIZABLE' }, `key ${JSON.stringify(bad)}`);
      }
      let deep: unknown = 0;
      for (let i = 0; i < 5000; i++) deep = [deep];
      const throwing = Object.defineProperty({}, 'x', { enumerable: true, get: () => { throw new Error('getter'); } });
      const trap = new Proxy({}, { ownKeys: () => { throw new Error('trap'); } });
      for (const bad of [-0, { a: -0 }, { [Symbol('s')]: 1 }, deep, throwing, trap]) {
        await assert.rejects(store.set(id, 'v', bad), { code: 'HERALD_UNSERIALIZABLE' });
      }
      await assert.rejects(store.createSession(uniqueId(), { meta: throwing }), { code: 'HERALD_UNSERIALIZABLE' });
      await assert.rejects(store.createSession(uniqueId(), Object.defineProperty({}, 'ttlMs', { enumerable: true, get: () => { throw new Error('option getter'); } })), { code: 'HERALD_INVALID_OPTION' });
      await assert.rejects(store.transaction(id, (tx) => tx.set('v', 1, throwing as never)), { code: 'HERALD_INVALID_ARGUMENT' });
      assert.deepEqual(await store.list(id), []);
      // What both stores keep exactly: a paired surrogate, 0, and a "__proto__" key.
      const kept = { emoji: '\uD83D\uDE00', zero: 0, ['__proto__']: 1 };
      await store.set(id, 'v', JSON.parse(JSON.stringify(kept)) as never);
      assert.deepEqual(await store.get(id, 'v'), kept); // key order aside: PostgreSQL's JSONB keeps its own
    });

    test('deleteSession() - ends each watcher once its own removals reached it, not when the whole hub is idle', async ({ make }) => {
      const { hub, store } = await make();
      const elsewhere = `elsewhere/${uniqueId()}`;
      const hanging = hub.observe(elsewhere, () => new Promise<void>(() => {}), { label: 'hangs for good' });
      hub.notify(elsewhere, 0, 1);
      const id = uniqueId();
      await store.createSession(id);
      await store.set(id, 'a', 1);
      const watcher = closes();
      const removals: unknown[] = [];
      await store.watchSession(id, (c) => void removals.push([c.meta['name'], c.newValue]), { onClose: watcher.onClose });
      await store.deleteSession(id);
      await watcher.ended();
      assert.deepEqual(removals, [['a', undefined]]);
      assert.deepEqual(watcher.reasons, ['session-ended']);
      hanging.unsubscribe(); // removal wins: the hub's close no longer waits for it
    });

    test('watch() - a watcher registering while its session is deleted ends with "session-ended", never stays on the gone session', async ({ make }) => {
      const { store } = await make();
      // Many interleavings of the two: either one starts first, the other 0 to 5 microtask turns later.
      const cases = [false, true].flatMap((includeCurrent) => [false, true].flatMap((deleteFirst) => [0, 1, 2, 3, 4, 5].map((turns) => ({ includeCurrent, deleteFirst, turns }))));
      for (const { includeCurrent, deleteFirst, turns } of cases) {
        const id = uniqueId();
        await store.createSession(id);
        await store.set(id, 'a', 1);
        const watcher = closes();
        const watch = (): Promise<unknown> => store.watchSession(id, () => {}, { includeCurrent, onClose: watcher.onClose }).catch((error: unknown) => error);
        const first = deleteFirst ? store.deleteSession(id) : watch();
        for (let i = 0; i < turns; i++) await Promise.resolve();
        const second = deleteFirst ? watch() : store.deleteSession(id);
        const [a, b] = await Promise.all([first, second]);
        const sub = deleteFirst ? b : a;
        // Either the watch came too late (no session) or it ended with the session.
        if (sub instanceof Error) assert.equal((sub as { code?: string }).code, 'HERALD_NO_SESSION');
        else await watcher.ended();
        if (!(sub instanceof Error)) assert.deepEqual(watcher.reasons, ['session-ended']);
      }
    });

    test('set() - per key, announcements follow commit order: 8 concurrent writers, every version announced once, in order', async ({ make }) => {
      const { hub, store } = await make();
      const id = uniqueId();
      await store.createSession(id);
      const versions: number[] = [];
      await store.watch(id, 'n', (c) => void versions.push(c.meta['version'] as number));
      const writers = 8;
      const sets = 150;
      await Promise.all(Array.from({ length: writers }, async (_, w) => {
        for (let i = 0; i < sets; i++) await store.set(id, 'n', w * sets + i);
      }));
      await drain(hub);
      const outOfOrder = versions.filter((v, i) => i > 0 && v <= versions[i - 1]!).length;
      assert.equal(outOfOrder, 0, `versions out of commit order: ${outOfOrder} of ${versions.length}`);
      assert.deepEqual(versions, Array.from({ length: writers * sets }, (_, i) => i + 1));
    });

    test('set() - a variable\'s version never goes backwards, not even when it is deleted and made again (in one transaction or two)', async ({ make }) => {
      const { hub, store } = await make();
      const id = uniqueId();
      await store.createSession(id);
      await store.set(id, 'x', 'A');
      const plain: unknown[] = [];
      const current: unknown[] = [];
      await store.watch(id, 'x', (c) => void plain.push([c.newValue, c.meta['version']]));
      await store.watch(id, 'x', (c) => void current.push([c.newValue, c.meta['version']]), { includeCurrent: true });
      await store.transaction(id, async (tx) => {
        await tx.delete('x');
        await tx.set('x', 'B');
      });
      // The transaction made two real changes (2: deleted, 3: set), announced once, coalesced, with the last version.
      assert.equal((await store.set(id, 'x', 'C')).version, 4);
      assert.equal(await store.delete(id, 'x'), true);
      assert.equal((await store.set(id, 'x', 'D')).version, 6);
      await drain(hub);
      assert.deepEqual(plain, [['B', 3], ['C', 4], [undefined, 5], ['D', 6]]);
      assert.deepEqual(current, [['A', 1], ['B', 3], ['C', 4], [undefined, 5], ['D', 6]]);
      assert.deepEqual(await store.list(id), [{ name: 'x', value: 'D', version: 6 }]);
    });

    test('transaction() - one that never settles is rolled back at transactionTimeoutMs: HERALD_TIMEOUT, its tx refuses later calls, the session is free, nothing announced', async ({ make }) => {
      const { hub, store } = await make({ transactionTimeoutMs: 100 });
      const id = uniqueId();
      await store.createSession(id);
      await store.set(id, 'n', 1);
      let kept: { set(name: string, value: unknown): Promise<unknown> } | undefined;
      await expectNoChange(hub, variableKey(id, 'n'), async () => {
        await assert.rejects(store.transaction(id, async (tx) => {
          kept = tx;
          await tx.set('n', 2);
          await new Promise<void>(() => {}); // never settles
        }), { code: 'HERALD_TIMEOUT' });
      });
      await assert.rejects(kept!.set('n', 3), { code: 'HERALD_SETTLED' });
      // A set still in flight (its value being validated) when the timeout fires never reports a write that was rolled back.
      let finishValidation!: () => void;
      const validating = new Promise<void>((resolve) => (finishValidation = resolve));
      const slow: StandardSchemaV1 = { '~standard': { version: 1, vendor: 'test', validate: async (value) => { await validating; return { value }; } } };
      await store.defineVariable(id, 'slow', { schema: slow });
      let inFlight: Promise<unknown> | undefined;
      await assert.rejects(store.transaction(id, (tx) => {
        inFlight = tx.set('slow', 1);
        return new Promise<void>(() => {}); // never settles: the timeout ends it
      }), { code: 'HERALD_TIMEOUT' });
      finishValidation();
      await assert.rejects(within(inFlight!, 5000, 'the set in flight'), { code: 'HERALD_SETTLED' });
      assert.equal(await store.get(id, 'slow'), undefined);
      assert.equal(await store.get(id, 'n'), 1);
      assert.equal((await store.set(id, 'n', 4)).version, 2, 'the session is free again');
    });

    test('transaction() - changing its own session from inside it through the store fails at once with HERALD_REENTRANT instead of waiting for itself', async ({ make }) => {
      const { store } = await make();
      const id = uniqueId();
      const other = uniqueId();
      await store.createSession(id);
      await store.createSession(other);
      let later: Promise<unknown> | undefined;
      let txOver!: () => void;
      const over = new Promise<void>((resolve) => (txOver = resolve));
      await store.transaction(id, async (tx) => {
        await assert.rejects(store.set(id, 'n', 1), { code: 'HERALD_REENTRANT' });
        await assert.rejects(store.deleteSession(id), { code: 'HERALD_REENTRANT' });
        await assert.rejects(store.touch(id), { code: 'HERALD_REENTRANT' });
        // Work the transaction starts that runs after it is over is no longer inside it.
        later = over.then(() => store.set(id, 'later', true));
        await store.set(other, 'n', 1); // another session is fine
        await tx.set('n', 2);
      });
      assert.equal(await store.get(id, 'n'), 2);
      assert.equal(await store.get(other, 'n'), 1);
      txOver();
      await within(later!, 5000, 'the write started inside the transaction');
      assert.equal(await store.get(id, 'later'), true);
    });

    test('expireSessions() - never waits for a session a transaction holds: the others end, the held one ends at a later sweep', async ({ make }) => {
      const { store } = await make({ transactionTimeoutMs: 60_000 });
      const held = uniqueId();
      const free = uniqueId();
      // Long enough for the transaction below to take the session before it expires.
      const ttlMs = 1000;
      const expiries = [(await store.createSession(held, { ttlMs })).expiresAt!, (await store.createSession(free, { ttlMs })).expiresAt!];
      const heldWatcher = closes();
      const freeWatcher = closes();
      await store.watchSession(held, () => {}, { onClose: heldWatcher.onClose });
      await store.watchSession(free, () => {}, { onClose: freeWatcher.onClose });
      let release!: () => void;
      let entered!: () => void;
      const inside = new Promise<void>((resolve) => (entered = resolve));
      const holding = store.transaction(held, async () => {
        entered();
        await new Promise<void>((resolve) => (release = resolve));
      }).catch((error: unknown) => error);
      let holdingSettled = false;
      void holding.finally(() => (holdingSettled = true));
      await within(inside, 5000, 'the transaction to hold its session');
      await within(new Promise<void>((resolve) => {
        const check = (): void => void (Date.now() > Math.max(...expiries) ? resolve() : setTimeout(check, 10));
        check();
      }), 10_000, 'both sessions to expire');
      try {
        // The sweep ends the free session, and goes by the held one (skipped as if absent) instead of waiting for it.
        await within(store.expireSessions(), 5000, 'a sweep while a transaction holds one of the sessions');
        await freeWatcher.ended();
        assert.deepEqual(freeWatcher.reasons, ['session-ended']);
        await within(store.expireSessions(), 5000, 'a second sweep');
        assert.equal(holdingSettled, false, 'the transaction still holds its session');
        assert.deepEqual(heldWatcher.reasons, [], 'the held session is not ended while held');
      } finally {
        release();
      }
      await within(holding, 5000, 'the transaction');
      // Once the transaction is over, a sweep ends the session it held.
      await within(store.expireSessions(), 5000, 'a sweep after the transaction');
      await heldWatcher.ended();
      assert.deepEqual(heldWatcher.reasons, ['session-ended']);
    });

    test('watch() - includeCurrent leaves no gap and no duplicate while writes race with the call', async ({ make }) => {
      const { hub, store } = await make();
      const id = uniqueId();
      await store.createSession(id);
      await store.set(id, 'n', 0);
      const versions: number[] = [];
      const values: unknown[] = [];
      const writes: Promise<unknown>[] = [];
      for (let i = 1; i <= 20; i++) writes.push(store.set(id, 'n', i));
      const watching = store.watch(id, 'n', (c) => {
        versions.push(c.meta['version'] as number);
        values.push(c.newValue);
      }, { includeCurrent: true });
      for (let i = 21; i <= 40; i++) writes.push(store.set(id, 'n', i));
      await Promise.all([...writes, watching]);
      await drain(hub);
      // Concurrent writers may commit in any order; what the watcher must see is the version it read, then every later one once.
      const first = versions[0]!;
      assert.deepEqual(versions, Array.from({ length: 42 - first }, (_, i) => first + i), `versions ${versions.join(',')}`);
      assert.equal(values.at(-1), await store.get(id, 'n'));
    });

    test('transaction() - reads its own writes, and announces once per key after commit with one txId', async ({ make }) => {
      const { hub, store } = await make();
      const id = uniqueId();
      await store.createSession(id);
      await store.set(id, 'a', 1);
      const seen = collectAll(hub);
      const result = await store.transaction(id, async (tx) => {
        await tx.set('a', 2);
        await tx.set('a', 3);
        await tx.set('b', 'x', { reason: 'import' });
        assert.equal(await tx.get('a'), 3);
        await drain(hub);
        assert.equal(seen.length, 0, 'nothing is announced before commit');
        return 'done';
      });
      assert.equal(result, 'done');
      await drain(hub);
      assert.deepEqual(seen.map((c) => [c.meta['name'], c.oldValue, c.newValue]), [['a', 1, 3], ['b', undefined, 'x']]);
      assert.equal(seen[1]!.meta['reason'], 'import', "a write's own meta is announced with it");
      const txIds = new Set(seen.map((c) => c.meta['txId']));
      assert.equal(txIds.size, 1);
      assert.equal(typeof [...txIds][0], 'string');
      assert.equal((await store.list(id)).find((v) => v.name === 'a')!.version, 3);
    });

    test('transaction() - a context kept past its transaction refuses to be used', async ({ make }) => {
      const { store } = await make();
      const id = uniqueId();
      await store.createSession(id);
      let kept: { set(name: string, value: unknown): Promise<unknown> } | undefined;
      await store.transaction(id, (tx) => {
        kept = tx;
      });
      await assert.rejects(kept!.set('late', 1), { code: 'HERALD_SETTLED' });
      assert.deepEqual(await store.list(id), []);
    });

    test('transaction() - a function that throws changes nothing and announces nothing', async ({ make }) => {
      const { hub, store } = await make();
      const id = uniqueId();
      await store.createSession(id);
      await store.set(id, 'a', 1);
      const seen = collectAll(hub);
      await assert.rejects(store.transaction(id, async (tx) => {
        await tx.set('a', 2);
        await tx.delete('a');
        await tx.set('b', 1);
        throw new Error('changed my mind');
      }), /changed my mind/);
      await drain(hub);
      assert.deepEqual(seen, []);
      assert.deepEqual(await store.list(id), [{ name: 'a', value: 1, version: 1 }]);
    });

    test('deleteSession() - removes the variables, announces each removal once, and ends the watchers with "session-ended"', async ({ make }) => {
      const { hub, store } = await make();
      const id = uniqueId();
      await store.createSession(id);
      await store.set(id, 'a', 1);
      await store.set(id, 'b', 2);
      const watcher = closes();
      const removals: unknown[] = [];
      const sub = await store.watchSession(id, (c) => void removals.push([c.meta['name'], c.oldValue, c.newValue]), { onClose: watcher.onClose });
      assert.equal(await store.deleteSession(id), true);
      await drain(hub);
      await watcher.ended(); // the watchers end after the removals reached them
      assert.deepEqual(removals.sort(), [['a', 1, undefined], ['b', 2, undefined]]);
      assert.deepEqual(watcher.reasons, ['session-ended']);
      assert.equal(sub.active, false);
      await assert.rejects(store.get(id, 'a'), { code: 'HERALD_NO_SESSION' });
    });

    test('expireSessions() - an expired session ends as a deleted one does', async ({ make }) => {
      const { hub, store } = await make();
      const id = uniqueId();
      await store.createSession(id, { ttlMs: 60_000 });
      await store.set(id, 'a', 1);
      const watcher = closes();
      const removals: unknown[] = [];
      await store.watch(id, 'a', (c) => void removals.push([c.oldValue, c.newValue, c.meta['sessionEnded']]), { onClose: watcher.onClose });
      const info = await store.touch(id, 1); // now it expires in a millisecond
      await clockPast(info.expiresAt!);
      assert.equal(await store.getSession(id), undefined, 'an expired session is not reported');
      assert.equal(await store.expireSessions(), 1);
      assert.equal(await store.expireSessions(), 0);
      await drain(hub);
      await watcher.ended();
      assert.deepEqual(removals, [[1, undefined, 'expired']]);
      assert.deepEqual(watcher.reasons, ['session-ended']);
      await assert.rejects(store.set(id, 'a', 2), { code: 'HERALD_NO_SESSION' });
    });

    test('createSession() - an expired session not yet swept ends first: its variables do not carry over', async ({ make }) => {
      const { hub, store } = await make();
      const id = uniqueId();
      await store.createSession(id, { ttlMs: 60_000 });
      await store.set(id, 'old', 1);
      const watcher = closes();
      await store.watch(id, 'old', () => {}, { onClose: watcher.onClose });
      const info = await store.touch(id, 1);
      await clockPast(info.expiresAt!);
      const seen = collectAll(hub);
      await store.createSession(id);
      assert.deepEqual(await store.list(id), []);
      await drain(hub);
      await watcher.ended();
      assert.deepEqual(seen.map((c) => [c.meta['name'], c.oldValue, c.newValue, c.meta['sessionEnded']]), [['old', 1, undefined, 'expired']]);
      assert.deepEqual(watcher.reasons, ['session-ended']);
    });

    test('set() - in a strict store, a variable must be defined first', async ({ make }) => {
      const { store } = await make({ strict: true });
      const id = uniqueId();
      await store.createSession(id);
      await assert.rejects(store.set(id, 'x', 1), { code: 'HERALD_NO_VARIABLE' });
      await store.defineVariable(id, 'x');
      assert.equal(await store.get(id, 'x'), undefined);
      assert.deepEqual(await store.set(id, 'x', 1), { oldValue: undefined, newValue: 1, version: 1 });
      await store.defineVariable(id, 'y', { initial: 5 });
      assert.equal(await store.get(id, 'y'), 5);
    });

    test('set() - a value the schema rejects fails with HERALD_INVALID_VALUE and the issues; nothing is written or announced', async ({ make }) => {
      const { hub, store } = await make();
      const id = uniqueId();
      await store.createSession(id);
      await store.defineVariable(id, 'pct', { schema: percent, initial: 10 });
      const seen = collectAll(hub);
      await assert.rejects(store.set(id, 'pct', 150), (error: { code?: string; issues?: { message: string }[] }) => {
        assert.equal(error.code, 'HERALD_INVALID_VALUE');
        assert.equal(error.issues?.[0]?.message, 'expected a number from 0 to 100');
        return true;
      });
      await drain(hub);
      assert.deepEqual(seen, []);
      assert.equal(await store.get(id, 'pct'), 10);
    });

    test('set() - values JSON cannot carry fail with HERALD_UNSERIALIZABLE before anything is written', async ({ make }) => {
      const { hub, store } = await make();
      const id = uniqueId();
      await store.createSession(id);
      const cycle: Record<string, unknown> = {};
      cycle['self'] = cycle;
      const seen = collectAll(hub);
      for (const value of [() => 1, 10n, cycle, { nested: [undefined] }, NaN, new Date(), Symbol('s')]) {
        await assert.rejects(store.set(id, 'v', value), { code: 'HERALD_UNSERIALIZABLE' });
      }
      await drain(hub);
      assert.deepEqual(seen, []);
      assert.deepEqual(await store.list(id), []);
    });

    test('bad input - unknown sessions and malformed ids or names are refused with coded errors', async ({ make }) => {
      const { store } = await make();
      const missing = uniqueId();
      await assert.rejects(store.set(missing, 'a', 1), { code: 'HERALD_NO_SESSION' });
      await assert.rejects(store.get(missing, 'a'), { code: 'HERALD_NO_SESSION' });
      await assert.rejects(store.list(missing), { code: 'HERALD_NO_SESSION' });
      await assert.rejects(store.touch(missing), { code: 'HERALD_NO_SESSION' });
      await assert.rejects(store.watch(missing, 'a', () => {}), { code: 'HERALD_NO_SESSION' });
      await assert.rejects(store.transaction(missing, () => 1), { code: 'HERALD_NO_SESSION' });
      const id = uniqueId();
      await store.createSession(id);
      for (const bad of ['', 'x'.repeat(257), 42, null, undefined]) {
        await assert.rejects(store.createSession(bad as string), { code: 'HERALD_INVALID_ARGUMENT', message: /`sessionId`/ });
        await assert.rejects(store.set(id, bad as string, 1), { code: 'HERALD_INVALID_ARGUMENT', message: /`name`/ });
      }
      await assert.rejects(store.set(id, 'a', 1, 'meta' as never), { code: 'HERALD_INVALID_ARGUMENT', message: /`meta`/ });
      await assert.rejects(store.createSession(uniqueId(), { ttlMs: -1 }), { code: 'HERALD_INVALID_OPTION', message: /`options.ttlMs`/ });
      assert.deepEqual(await store.list(id), []);
    });

    test('keys - session ids and names with "/", "*" or "__proto__" stay separate and pollute nothing', async ({ make }) => {
      const { hub, store } = await make();
      const ids = ['a/b', '*', '__proto__'].map((prefix) => prefix + uniqueId());
      const seen = new Map<string, string[]>(ids.map((id) => [id, []]));
      for (const id of ids) {
        await store.createSession(id);
        await store.watchSession(id, (c) => void seen.get(id)!.push(`${c.meta['name'] as string}=${JSON.stringify(c.newValue)}`));
      }
      const other = `x${uniqueId()}`;
      await store.createSession(other);
      const polluting = JSON.parse('{"__proto__": {"polluted": true}}') as Record<string, unknown>;
      for (const [i, id] of ids.entries()) {
        await store.set(id, '__proto__', i, polluting);
        await store.set(id, 'a/b', i);
      }
      await store.set(other, 'c', 3);
      await drain(hub);
      for (const [i, id] of ids.entries()) {
        assert.deepEqual(seen.get(id), [`__proto__=${i}`, `a/b=${i}`], `the watcher of ${JSON.stringify(id)} sees its own session only`);
        assert.equal(await store.get(id, '__proto__'), i);
        assert.deepEqual((await store.list(id)).map((v) => v.name).sort(), ['__proto__', 'a/b']);
      }
      assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
    });
  });
}
