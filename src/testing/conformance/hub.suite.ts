import assert from 'node:assert/strict';
import type { Change, CloseReason, ErrorContext, HubOptions, ObserverManager, OverflowPolicy } from '../../index.js';
import { collect } from '../collect.js';
import { expectNoChange } from '../expect-no-change.js';
import { nextChange } from '../next-change.js';
import { CaseRun, countdown, nextTurn, nodeTestRunner, registerSkipped, within, type SuiteRunner } from './runner.js';

/** The hub surface the conformance suite exercises. */
export type ConformingHub = Pick<
  ObserverManager,
  | 'observe' | 'observePattern' | 'notify' | 'remove' | 'watch' | 'scope' | 'defer' | 'observerCount'
  | 'keys' | 'patterns' | 'inspect' | 'getStats' | 'sweep' | 'drain' | 'close' | 'closed'
>;

/** Options of {@link hubSuite}. */
export interface HubSuiteOptions {
  /** Shown in the suite's title. */
  readonly name: string;
  /**
   * Makes a fresh hub; the suite closes it after each test. The suite passes
   * an `onError` that fails the test when an error it did not expect reaches
   * it (an assertion failing inside an observer's callback, say), so pass
   * `options.onError` on to the hub.
   */
  readonly create: (options: HubOptions) => ConformingHub;
  /** Skips the whole suite, with the reason; `false` or omitted runs it. */
  readonly skipAll?: string | false;
  /** Tests to skip by exact name, each with a reason a user would accept. */
  readonly skip?: readonly { readonly test: string; readonly reason: string }[];
  /** The test runner to register the tests with. @default node:test */
  readonly runner?: SuiteRunner;
  /** How long one test may take, cleanup aside, before it fails; every wait inside a test has its own, shorter deadline too. @default 30000 */
  readonly timeoutMs?: number;
}

/** What each test of the suite is given. */
interface HubCase {
  /** A fresh hub with `sweepIntervalMs: 0`, closed after the test. Without `onError` in `options`, any error reaching onError fails the test. */
  make(options?: HubOptions): ConformingHub;
  /** Runs `fn` after the test, whatever its outcome. */
  onCleanup(fn: () => unknown): void;
  /** A promise for callbacks to wait on, resolved by the test, or after it (before its hubs close) if it failed first. */
  gate(): { promise: Promise<void>; resolve: () => void };
}

const POLICIES: readonly OverflowPolicy[] = ['drop-oldest', 'drop-newest', 'coalesce', 'disconnect'];

/** How long a single wait inside a test (a drain, a change to arrive) may take. */
const WAIT_MS = 5000;

/** A promise and its resolve function, for callbacks the test settles itself. */
function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** `hub.drain()`, with a deadline. */
function drain(hub: ConformingHub): Promise<void> {
  return within(hub.drain(), WAIT_MS, 'hub.drain() to resolve');
}

/** An answer of a `watch()` iterator, with a deadline. */
function answer<T>(next: Promise<IteratorResult<T>>): Promise<IteratorResult<T>> {
  return within(next, WAIT_MS, 'the watch() iterator to answer next()');
}

/** `iterator`, with a deadline on each of its answers; `break` still returns the iterator. */
function bounded<T>(iterator: AsyncIterableIterator<T>): AsyncIterableIterator<T> {
  return {
    next: () => answer(iterator.next()),
    return: (value?: unknown) => iterator.return!(value),
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}

let keyCounter = 0;
/** A key no other test uses. */
function uniqueKey(prefix = 'k'): string {
  return `${prefix}/${process.pid}/${++keyCounter}`;
}

/** Asserts delivered + dropped + coalesced + cancelled = fan-out, with nothing pending. */
function assertAccounting(hub: ConformingHub): void {
  const s = hub.getStats();
  assert.equal(s.deliveries + s.dropped + s.coalesced + s.cancelled, s.fanOut, `accounting: ${JSON.stringify(s)}`);
  assert.equal(s.pending, 0);
}

/**
 * The hub contract of DESIGN.md sections 2 and 4 as tests, for node:test (the
 * default) or any runner given as `runner`. Waits are on `drain()`, on
 * changes arriving or on countdowns, each with a deadline, never on a number
 * of microtasks: a hub that starts its deliveries a tick later passes too.
 *
 * @example
 * ```ts
 * // node:test
 * hubSuite({ name: 'mine', create: (options) => new MyHub(options) });
 * // vitest
 * import { describe, test } from 'vitest';
 * hubSuite({ name: 'mine', create: (options) => new MyHub(options), runner: { describe, test } });
 * ```
 */
export function hubSuite(options: HubSuiteOptions): void {
  const runner = options.runner ?? nodeTestRunner();
  const timeoutMs = options.timeoutMs ?? 30_000;
  const skips = new Map((options.skip ?? []).map((s) => [s.test, s.reason]));
  const skipAll = options.skipAll === undefined || options.skipAll === false ? undefined : options.skipAll;
  const it = (name: string, fn: (kit: HubCase) => Promise<void> | void): void => {
    const reason = skipAll ?? skips.get(name);
    if (reason !== undefined) {
      registerSkipped(runner, name, reason);
      return;
    }
    runner.test(name, () => {
      const run = new CaseRun();
      const make = (hubOptions: HubOptions = {}): ConformingHub => {
        const hub = options.create({ sweepIntervalMs: 0, ...hubOptions, onError: hubOptions.onError ?? run.recordError });
        run.onCleanup(() => hub.close());
        return hub;
      };
      const gate = (): { promise: Promise<void>; resolve: () => void } => {
        const gated = deferred();
        run.onCleanup(() => gated.resolve());
        return gated;
      };
      return run.run(name, timeoutMs, () => fn({ make, onCleanup: (cleanup) => run.onCleanup(cleanup), gate }));
    });
  };
  const describe = (name: string, fn: () => void): void => void runner.describe(name, fn);

  describe(`hub conformance: ${options.name}`, () => {
    describe('notify and delivery', () => {
      it('notify() - returns before any callback runs and delivers on the microtask queue, before timers', async (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        const order: string[] = [];
        hub.observe(key, () => void order.push('callback'));
        const immediate = new Promise<void>((resolve) => setImmediate(() => { order.push('immediate'); resolve(); }));
        assert.equal(hub.notify(key, 1, 2), true);
        assert.deepEqual(order, []);
        await immediate;
        assert.deepEqual(order, ['callback', 'immediate']);
      });

      it('notify() - returns false, takes no seq and delivers nothing when equals says unchanged', async (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        const seen = collect(hub, key);
        assert.equal(hub.notify(key, 'same', 'same'), false);
        assert.equal(hub.notify(key, NaN, NaN), false);
        assert.equal(hub.notify(key, 0, -0), true); // Object.is tells them apart
        hub.notify(key, 1, 2);
        await drain(hub);
        assert.deepEqual(seen.changes.map((c) => c.seq), [1, 2]);
        assert.equal(hub.getStats().notificationsSkipped, 2);
      });

      it('ObserverManager() - a custom equals decides what counts as a change', async (kit) => {
        const hub = kit.make({ equals: (a, b) => JSON.stringify(a) === JSON.stringify(b) });
        const key = uniqueKey();
        const seen = collect(hub, key);
        assert.equal(hub.notify(key, { a: 1 }, { a: 1 }), false);
        assert.equal(hub.notify(key, { a: 1 }, { a: 2 }), true);
        await drain(hub);
        assert.equal(seen.changes.length, 1);
      });

      it('notify() - the change is frozen and carries key, values, frozen meta, seq and time', async (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        const next = nextChange(hub, key);
        const meta = { source: 'test' };
        const before = Date.now();
        hub.notify(key, 'a', 'b', meta);
        const change = await next;
        assert.equal(change.key, key);
        assert.equal(change.oldValue, 'a');
        assert.equal(change.newValue, 'b');
        assert.deepEqual(change.meta, { source: 'test' });
        assert.ok(Object.isFrozen(change) && Object.isFrozen(change.meta));
        assert.equal(Object.isFrozen(meta), false, "the caller's own meta object is not frozen");
        assert.ok(change.at >= before && change.at <= Date.now());
        assert.equal(change.seq, 1);
      });

      it('notify() - seq is one counter for the whole hub and never goes backwards', async (kit) => {
        const hub = kit.make();
        const [a, b] = [uniqueKey(), uniqueKey()];
        const seenA = collect(hub, a);
        const seenB = collect(hub, b);
        hub.notify(a, 0, 1);
        hub.notify(b, 0, 1);
        hub.notify(a, 1, 2);
        await drain(hub);
        assert.deepEqual(seenA.changes.map((c) => c.seq), [1, 3]);
        assert.deepEqual(seenB.changes.map((c) => c.seq), [2]);
      });

      it('notify() - the observers of a change are those registered when it was notified', async (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        const late: Change[] = [];
        hub.observe(key, () => {
          hub.observe(key, (change) => void late.push(change)); // added during delivery of seq 1
        });
        hub.notify(key, 0, 1);
        hub.observe(key, (change) => void late.push(change)); // added after notify, before delivery
        await drain(hub);
        assert.equal(late.length, 0);
        hub.notify(key, 1, 2);
        await drain(hub);
        assert.deepEqual(late.map((c) => c.seq), [2, 2]);
      });

      it('notify() - the observers of one change are called in the order they registered, patterns included', async (kit) => {
        const hub = kit.make();
        const key = `${uniqueKey()}/leaf`;
        const order: string[] = [];
        hub.observe(key, () => void order.push('exact-1'));
        hub.observePattern(key.replace(/[^/]+$/, '*'), () => void order.push('pattern-2'));
        hub.observe(key, () => void order.push('exact-3'));
        hub.observePattern(`${key.split('/')[0]}/**`, () => void order.push('rest-4'));
        hub.notify(key, 0, 1);
        await drain(hub);
        assert.deepEqual(order, ['exact-1', 'pattern-2', 'exact-3', 'rest-4']);
      });

      it('notify() - an observer receives changes in seq order and its next delivery waits for its promise', async (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        const gate = kit.gate();
        const log: string[] = [];
        hub.observe(key, async (change) => {
          log.push(`start ${String(change.newValue)}`);
          if (change.newValue === 1) await gate.promise;
          log.push(`end ${String(change.newValue)}`);
        });
        const witness = countdown(3, 'a second observer of the key to receive the 3 changes');
        hub.observe(key, () => witness.tick());
        hub.notify(key, 0, 1);
        hub.notify(key, 1, 2);
        hub.notify(key, 2, 3);
        await witness.wait(); // every change has reached every observer free to take it
        await nextTurn(); // and a hub that hands deliveries on late has had a turn more
        assert.deepEqual(log, ['start 1'], 'changes 2 and 3 wait while the promise of change 1 is pending');
        gate.resolve();
        await drain(hub);
        assert.deepEqual(log, ['start 1', 'end 1', 'start 2', 'end 2', 'start 3', 'end 3']);
      });

      it('notify() - observers never wait for each other', async (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        const gate = kit.gate();
        hub.observe(key, () => gate.promise);
        const fast: unknown[] = [];
        const all = countdown(6, 'the fast observer to receive all 6 changes while the slow one is stuck');
        hub.observe(key, (change) => {
          fast.push(change.newValue);
          all.tick();
        });
        for (let i = 0; i < 6; i++) hub.notify(key, i, i + 1);
        await all.wait();
        assert.deepEqual(fast, [1, 2, 3, 4, 5, 6], 'the fast observer got everything while the slow one is stuck');
        gate.resolve();
        await drain(hub);
      });
    });

    describe('removal', () => {
      it('unsubscribe() - returns true once, then false, and active turns false', (kit) => {
        const hub = kit.make();
        const sub = hub.observe(uniqueKey(), () => {});
        assert.equal(sub.active, true);
        assert.equal(sub.unsubscribe(), true);
        assert.equal(sub.active, false);
        assert.equal(sub.unsubscribe(), false);
        assert.equal(hub.remove(sub), false);
      });

      it('unsubscribe() - removal wins over changes already notified and queued', async (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        const gate = kit.gate();
        const started = deferred();
        const seen: unknown[] = [];
        const slow = hub.observe(key, async (change) => {
          seen.push(change.newValue);
          started.resolve();
          await gate.promise;
        });
        const quick = hub.observe(key, (change) => void seen.push(`quick ${String(change.newValue)}`));
        hub.notify(key, 0, 1);
        quick.unsubscribe(); // before any delivery could start: never invoked
        hub.notify(key, 1, 2);
        hub.notify(key, 2, 3);
        await within(started.promise, WAIT_MS, 'the slow observer to start on change 1');
        slow.unsubscribe(); // 2 and 3 wait behind it: never delivered
        gate.resolve();
        await drain(hub);
        assert.deepEqual(seen, [1]);
        assertAccounting(hub);
        assert.equal(hub.getStats().cancelled, 3);
      });

      it('Symbol.dispose - `using` removes the observer at the end of the block', (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        {
          using sub = hub.observe(key, () => {});
          assert.equal(sub.active, true);
          assert.equal(hub.observerCount(key), 1);
        }
        assert.equal(hub.observerCount(key), 0);
      });

      it('remove() - removes by handle or by id, and says false for what is not there', (kit) => {
        const hub = kit.make();
        const other = kit.make();
        const key = uniqueKey();
        const a = hub.observe(key, () => {});
        const b = hub.observe(key, () => {});
        const p = hub.observePattern(`${key}/*`, () => {});
        const foreign = other.observe(key, () => {});
        assert.equal(hub.remove(foreign), false);
        assert.equal(foreign.active, true);
        assert.equal(hub.remove(b.id), true);
        assert.equal(b.active, false);
        assert.equal(hub.remove(b.id), false);
        assert.equal(hub.remove(p.id), true);
        assert.equal(hub.remove(a), true);
        assert.equal(hub.remove('no-such-id'), false);
        assert.equal(hub.observerCount(), 0);
      });

      it('remove() - passes the given reason to onClose, and refuses one that is not a close reason', (kit) => {
        const hub = kit.make();
        const reasons: CloseReason[] = [];
        const sub = hub.observe(uniqueKey(), () => {}, { onClose: (r) => void reasons.push(r) });
        assert.throws(() => hub.remove(sub, 'because' as CloseReason), { code: 'HERALD_INVALID_ARGUMENT', message: /`reason`/ });
        assert.equal(sub.active, true);
        assert.equal(hub.remove(sub, 'session-ended'), true);
        assert.deepEqual(reasons, ['session-ended']);
      });

      it('observerCount() - no trace of a key remains once its last observer goes', (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        const subs = [hub.observe(key, () => {}), hub.observe(key, () => {}), hub.observePattern(`${key}/*`, () => {})];
        assert.deepEqual(hub.keys(), [key]);
        assert.deepEqual(hub.patterns(), [`${key}/*`]);
        assert.equal(hub.observerCount(key), 2);
        assert.equal(hub.observerCount(`${key}/x`), 1);
        assert.equal(hub.observerCount(), 3);
        for (const sub of subs) sub.unsubscribe();
        assert.deepEqual(hub.keys(), []);
        assert.deepEqual(hub.patterns(), []);
        assert.equal(hub.getStats().keys, 0);
        assert.equal(hub.inspect(key).observerCount, 0);
      });
    });

    describe('isolation', () => {
      it('notify() - a callback that throws hurts neither the notifier nor the other observers', async (kit) => {
        const errors: [unknown, ErrorContext][] = [];
        const hub = kit.make({ onError: (error, context) => void errors.push([error, context]) });
        const key = uniqueKey();
        const boom = new Error('boom');
        const bad = hub.observe(key, () => { throw boom; });
        const good = collect(hub, key);
        assert.equal(hub.notify(key, 0, 1), true);
        await drain(hub);
        assert.deepEqual(good.values, [1]);
        assert.equal(errors.length, 1);
        assert.equal(errors[0]![0], boom);
        assert.equal(errors[0]![1].key, key);
        assert.equal(errors[0]![1].observerId, bad.id);
        assert.equal(errors[0]![1].change.newValue, 1);
        assert.equal(bad.active, true, 'a throwing observer stays registered');
        assert.equal(hub.getStats().deliveryErrors, 1);
      });

      it('notify() - a callback that rejects goes to onError and never becomes an unhandled rejection', async (kit) => {
        const unhandled: unknown[] = [];
        const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
        process.on('unhandledRejection', onUnhandled);
        kit.onCleanup(() => process.off('unhandledRejection', onUnhandled));
        const errors: unknown[] = [];
        const hub = kit.make({ onError: (error) => void errors.push(error) });
        const key = uniqueKey();
        hub.observe(key, () => Promise.reject(new Error('async boom')));
        hub.notify(key, 0, 1);
        hub.notify(key, 1, 2);
        await drain(hub);
        await new Promise((resolve) => setImmediate(resolve)); // past the point where Node reports unhandled rejections
        assert.equal(errors.length, 2);
        assert.deepEqual(unhandled, []);
      });

      it('notify() - a callback that never settles times out with HERALD_TIMEOUT and the next delivery goes on', async (kit) => {
        const errors: unknown[] = [];
        const hub = kit.make({ callbackTimeoutMs: 20, onError: (error) => void errors.push(error) });
        const key = uniqueKey();
        const seen: unknown[] = [];
        hub.observe(key, (change) => {
          seen.push(change.newValue);
          return change.newValue === 1 ? new Promise(() => {}) : undefined;
        });
        hub.notify(key, 0, 1);
        hub.notify(key, 1, 2);
        await drain(hub);
        assert.deepEqual(seen, [1, 2]);
        assert.equal(errors.length, 1);
        assert.equal((errors[0] as { code?: string }).code, 'HERALD_TIMEOUT');
        const stats = hub.getStats();
        assert.equal(stats.deliveryTimeouts, 1);
        assert.equal(stats.deliveries, 2, 'a timeout counts as delivered');
        assertAccounting(hub);
      });

      it('ObserverManager() - an onError that throws is contained', async (kit) => {
        const hub = kit.make({ onError: () => { throw new Error('onError fails too'); } });
        const key = uniqueKey();
        hub.observe(key, () => { throw new Error('boom'); });
        const good = collect(hub, key);
        hub.notify(key, 0, 1);
        await drain(hub);
        assert.deepEqual(good.values, [1]);
      });
    });

    describe('bounded queues', () => {
      for (const policy of POLICIES) {
        it(`queue - overflow "${policy}" bounds the queue and accounts for every change`, async (kit) => {
          const hub = kit.make();
          const key = uniqueKey();
          const gate = kit.gate();
          const seen: Change[] = [];
          const reasons: CloseReason[] = [];
          const sub = hub.observe(key, async (change) => {
            seen.push(change);
            if (change.newValue === 1) await gate.promise;
          }, { queue: { limit: 3, overflow: policy }, onClose: (r) => void reasons.push(r) });
          const witness = countdown(10, 'a second observer of the key to receive the 10 changes');
          hub.observe(key, () => witness.tick());
          for (let i = 0; i < 10; i++) hub.notify(key, i, i + 1); // 1 in flight, 9 offered to a queue of 3
          await witness.wait(); // every change has been offered to the slow observer too
          assert.equal(hub.getStats().queued, policy === 'disconnect' ? 0 : 3, 'the queue holds its limit, no more');
          gate.resolve();
          await drain(hub);
          const values = seen.map((change) => [change.oldValue, change.newValue]);
          const stats = hub.getStats();
          switch (policy) {
            case 'drop-oldest':
              assert.deepEqual(values, [[0, 1], [7, 8], [8, 9], [9, 10]]);
              assert.equal(stats.dropped, 6);
              break;
            case 'drop-newest':
              assert.deepEqual(values, [[0, 1], [1, 2], [2, 3], [3, 4]]);
              assert.equal(stats.dropped, 6);
              break;
            case 'coalesce':
              assert.deepEqual(values, [[0, 1], [1, 2], [2, 3], [3, 10]], 'oldest oldValue, newest newValue');
              assert.equal(seen[3]!.seq, 10, 'newest seq');
              assert.equal(stats.coalesced, 6);
              break;
            case 'disconnect':
              assert.deepEqual(values, [[0, 1]]);
              assert.equal(sub.active, false);
              assert.deepEqual(reasons, ['slow-consumer']);
              assert.equal(stats.dropped, 1);
              assert.equal(stats.cancelled, 8, '3 waiting in its queue, 5 still to be dispatched');
              break;
          }
          assert.ok(seen.every((change, i) => i === 0 || change.seq > seen[i - 1]!.seq), 'seq never goes backwards');
          assertAccounting(hub);
        });
      }

      it('queue - a coalesced run that returns to where it started delivers nothing more', async (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        const gate = kit.gate();
        const seen: unknown[] = [];
        hub.observe(key, async (change) => {
          seen.push(change.newValue);
          await gate.promise;
        }, { queue: { limit: 1, overflow: 'coalesce' } });
        hub.notify(key, 'a', 'b'); // in flight
        hub.notify(key, 'b', 'c'); // queued
        hub.notify(key, 'c', 'b'); // merges to b → b: nothing left
        gate.resolve();
        await drain(hub);
        assert.deepEqual(seen, ['b']);
        assertAccounting(hub);
      });
    });

    describe('re-entrancy', () => {
      it('notify() - a change notified from a callback is delivered after the current ones, in order', async (kit) => {
        const hub = kit.make();
        const [a, b] = [uniqueKey(), uniqueKey()];
        const log: string[] = [];
        hub.observe(a, (change) => {
          log.push(`a1 ${String(change.newValue)}`);
          if (change.newValue === 1) hub.notify(b, 0, 1);
        });
        hub.observe(a, (change) => void log.push(`a2 ${String(change.newValue)}`));
        hub.observe(b, () => void log.push('b'));
        hub.notify(a, 0, 1);
        hub.notify(a, 1, 2);
        await drain(hub);
        assert.deepEqual(log, ['a1 1', 'a2 1', 'a1 2', 'a2 2', 'b']);
      });

      it('notify() - 100 000 re-entrant notifies in a cycle cause no stack overflow', async (kit) => {
        const hub = kit.make();
        const [a, b] = [uniqueKey(), uniqueKey()];
        let count = 0;
        hub.observe(a, (change) => { if (++count < 100_000) hub.notify(b, change.newValue, (change.newValue as number) + 1); });
        hub.observe(b, (change) => { if (++count < 100_000) hub.notify(a, change.newValue, (change.newValue as number) + 1); });
        hub.notify(a, 0, 1);
        await drain(hub);
        assert.equal(count, 100_000);
      });

      it('observe() - a callback may observe and unsubscribe during delivery', async (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        const seen: string[] = [];
        const second = hub.observe(key, () => void seen.push('second'));
        hub.observe(key, () => {
          second.unsubscribe();
          hub.observe(key, () => void seen.push('third'));
        });
        hub.notify(key, 0, 1);
        await drain(hub);
        assert.deepEqual(seen, ['second']);
        hub.notify(key, 1, 2);
        await drain(hub);
        assert.deepEqual(seen, ['second', 'third']);
      });
    });

    describe('patterns', () => {
      it('observePattern() - "*" matches one segment and "**" one or more trailing segments', async (kit) => {
        const hub = kit.make();
        const root = uniqueKey('p');
        const one = collect(hub, `${root}/a`);
        const star: string[] = [];
        const rest: string[] = [];
        hub.observePattern(`${root}/*/t`, (c) => void star.push(c.key));
        hub.observePattern(`${root}/**`, (c) => void rest.push(c.key));
        for (const key of [`${root}/a`, `${root}/a/t`, `${root}/b/t`, `${root}/a/b/t`, root, `${root}x/a/t`]) hub.notify(key, 0, 1);
        await drain(hub);
        assert.deepEqual(star, [`${root}/a/t`, `${root}/b/t`]);
        assert.deepEqual(rest, [`${root}/a`, `${root}/a/t`, `${root}/b/t`, `${root}/a/b/t`]);
        assert.equal(one.changes.length, 1);
      });
    });

    describe('lifecycle', () => {
      it('observe() - aborting the signal removes the observer with reason "aborted"', async (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        const controller = new AbortController();
        const reasons: CloseReason[] = [];
        const seen: unknown[] = [];
        const sub = hub.observe(key, (c) => void seen.push(c), { signal: controller.signal, onClose: (r) => void reasons.push(r) });
        hub.notify(key, 0, 1);
        controller.abort(); // after notify, before delivery: removal wins
        await drain(hub);
        assert.deepEqual(seen, []);
        assert.equal(sub.active, false);
        assert.deepEqual(reasons, ['aborted']);
        assert.equal(hub.observerCount(key), 0);
        assertAccounting(hub);
      });

      it('observe() - an already aborted signal registers nothing', (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        const reasons: CloseReason[] = [];
        const sub = hub.observe(key, () => {}, { signal: AbortSignal.abort(), onClose: (r) => void reasons.push(r) });
        assert.equal(sub.active, false);
        assert.equal(sub.unsubscribe(), false);
        assert.deepEqual(hub.keys(), []);
        assert.deepEqual(reasons, ['aborted']);
        assert.equal(hub.getStats().observersAdded, 0);
      });

      it('observe() - isAlive false removes the observer before a delivery, with reason "dead"', async (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        let alive = true;
        const reasons: CloseReason[] = [];
        const seen = collect(hub, key);
        const sub = hub.observe(key, () => assert.fail('delivered to a dead observer'), { isAlive: () => alive, onClose: (r) => void reasons.push(r) });
        alive = false;
        hub.notify(key, 0, 1);
        await drain(hub);
        assert.equal(sub.active, false);
        assert.deepEqual(reasons, ['dead']);
        assert.deepEqual(seen.values, [1]);
        assert.equal(hub.getStats().deadObserversRemoved, 1);
        assertAccounting(hub);
      });

      it('sweep() - removes observers whose isAlive says false and returns how many', (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        let alive = true;
        const reasons: CloseReason[] = [];
        const probed = hub.observe(key, () => {}, { isAlive: () => alive, onClose: (r) => void reasons.push(r) });
        hub.observe(key, () => {}, { isAlive: () => true });
        hub.observe(key, () => {});
        assert.equal(hub.sweep(), 0);
        alive = false;
        assert.equal(hub.sweep(), 1);
        assert.equal(probed.active, false);
        assert.deepEqual(reasons, ['dead']);
        assert.equal(hub.observerCount(key), 2);
        const stats = hub.getStats();
        assert.equal(stats.cleanupRuns, 2);
        assert.equal(stats.deadObserversRemoved, 1);
      });

      it('ObserverManager() - the periodic sweep removes observers whose isAlive says false, with reason "dead"', async (kit) => {
        const hub = kit.make({ sweepIntervalMs: 10 });
        const key = uniqueKey();
        let alive = true;
        const gone = deferred<CloseReason>();
        const probed = hub.observe(key, () => {}, { isAlive: () => alive, onClose: (r) => gone.resolve(r) });
        const kept = hub.observe(key, () => {}, { isAlive: () => true });
        alive = false; // nothing is delivered: only a sweep can find it
        assert.equal(await within(gone.promise, WAIT_MS, 'the periodic sweep (every 10 ms) to remove the observer'), 'dead');
        assert.equal(probed.active, false);
        assert.equal(kept.active, true);
        const stats = hub.getStats();
        assert.ok(stats.cleanupRuns >= 1, 'the sweep that removed it is counted');
        assert.equal(stats.deadObserversRemoved, 1);
      });

      it('onClose() - is called exactly once, with the reason that removed the observer', async (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        const reasons: CloseReason[] = [];
        const onClose = (r: CloseReason): void => void reasons.push(r);
        const a = hub.observe(key, () => {}, { onClose });
        hub.observe(key, () => {}, { onClose });
        a.unsubscribe();
        a.unsubscribe();
        hub.remove(a);
        await hub.close();
        await hub.close();
        assert.deepEqual(reasons, ['unsubscribed', 'hub-closed']);
      });
    });

    describe('watch', () => {
      it('watch() - yields the changes of a key in order, and `break` removes its observer', async (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        const iterator = hub.watch<number>(key);
        hub.notify(key, 0, 1);
        hub.notify(key, 1, 2);
        hub.notify(key, 2, 3);
        const seen: number[] = [];
        for await (const change of bounded(iterator)) {
          seen.push(change.newValue);
          if (change.newValue === 3) break;
        }
        assert.deepEqual(seen, [1, 2, 3]);
        assert.equal(hub.observerCount(key), 0);
      });

      it('watch() - return() ends the iteration and removes its observer', async (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        const iterator = hub.watch(key);
        const pending = iterator.next();
        await iterator.return!();
        assert.deepEqual(await answer(pending), { done: true, value: undefined });
        assert.deepEqual(await answer(iterator.next()), { done: true, value: undefined });
        assert.equal(hub.observerCount(key), 0);
      });

      it('watch() - next() calls made at once are answered in order', async (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        const iterator = hub.watch<number>(key);
        const first = iterator.next();
        const second = iterator.next();
        hub.notify(key, 0, 1);
        hub.notify(key, 1, 2);
        assert.deepEqual([(await answer(first)).value?.newValue, (await answer(second)).value?.newValue], [1, 2]);
        const third = iterator.next();
        await iterator.return!();
        assert.deepEqual(await answer(third), { done: true, value: undefined });
      });

      it('watch() - aborting the signal ends the iteration and removes its observer', async (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        const controller = new AbortController();
        const iterator = hub.watch(key, { signal: controller.signal });
        const pending = iterator.next();
        controller.abort();
        assert.deepEqual(await answer(pending), { done: true, value: undefined });
        assert.equal(hub.observerCount(key), 0);
      });

      it('watch() - a slow reader is bounded by its queue and nothing goes uncounted', async (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        const iterator = hub.watch<number>(key, { queue: { limit: 2, overflow: 'drop-oldest' } });
        for (let i = 0; i < 10; i++) hub.notify(key, i, i + 1);
        await drain(hub); // does not wait for the reader
        const seen: number[] = [];
        for (let i = 0; i < 3; i++) seen.push(((await answer(iterator.next())).value as Change<number>).newValue);
        assert.deepEqual(seen, [1, 9, 10]);
        await iterator.return!();
        assertAccounting(hub);
        assert.equal(hub.getStats().dropped, 7);
      });
    });

    describe('defer', () => {
      it('defer() - commit announces each key once: first oldValue, last newValue', async (kit) => {
        const hub = kit.make();
        const [a, b] = [uniqueKey(), uniqueKey()];
        const seenA = collect(hub, a);
        const seenB = collect(hub, b);
        const pending = hub.defer();
        pending.notify(a, 1, 2);
        pending.notify(b, 'x', 'y');
        pending.notify(a, 2, 3, { step: 2 });
        await drain(hub);
        assert.equal(seenA.changes.length + seenB.changes.length, 0, 'nothing before commit');
        assert.equal(pending.commit(), 2);
        await drain(hub);
        assert.deepEqual(seenA.changes.map((c) => [c.oldValue, c.newValue, c.meta]), [[1, 3, { step: 2 }]]);
        assert.deepEqual(seenB.values, ['y']);
        assert.ok(seenA.changes[0]!.seq < seenB.changes[0]!.seq, 'keys in the order first touched');
      });

      it('defer() - a discarded batch announces nothing', async (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        await expectNoChange(hub, key, () => {
          const pending = hub.defer();
          pending.notify(key, 10, 12);
          pending.discard();
        });
      });

      it('defer() - disposing an uncommitted batch discards it', async (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        await expectNoChange(hub, key, () => {
          using pending = hub.defer();
          pending.notify(key, 10, 12);
        });
      });

      it('defer() - a key that returns to its start announces nothing', async (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        await expectNoChange(hub, key, () => {
          const pending = hub.defer();
          pending.notify(key, 'a', 'b');
          pending.notify(key, 'b', 'a');
          assert.equal(pending.commit(), 0);
        });
      });

      it('defer() - a settled batch refuses further calls with HERALD_SETTLED', (kit) => {
        const hub = kit.make();
        const pending = hub.defer();
        pending.commit();
        assert.throws(() => pending.notify(uniqueKey(), 1, 2), { code: 'HERALD_SETTLED' });
        assert.throws(() => pending.commit(), { code: 'HERALD_SETTLED' });
      });
    });

    describe('scope, drain and close', () => {
      it('scope() - dispose removes every observer the scope made, and only those', (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        const outside = hub.observe(key, () => {});
        const scope = hub.scope();
        const a = scope.observe(key, () => {});
        scope.observePattern(`${key}/*`, () => {});
        a.unsubscribe();
        assert.equal(scope.size, 1);
        assert.equal(scope.dispose(), 1);
        assert.equal(outside.active, true);
        assert.equal(hub.observerCount(), 1);
        assert.throws(() => scope.observe(key, () => {}), { code: 'HERALD_CLOSED' });
      });

      it('scope() - an observer whose signal is already aborted is neither registered nor kept', (kit) => {
        const hub = kit.make();
        const scope = hub.scope();
        const reasons: CloseReason[] = [];
        const sub = scope.observe(uniqueKey(), () => {}, { signal: AbortSignal.abort(), onClose: (r) => void reasons.push(r) });
        assert.equal(sub.active, false);
        assert.equal(scope.size, 0);
        assert.deepEqual(reasons, ['aborted']);
      });

      it('drain() - resolves at once when idle, and after async callbacks have settled otherwise', async (kit) => {
        const hub = kit.make();
        await drain(hub);
        const key = uniqueKey();
        let settled = false;
        const gate = kit.gate();
        hub.observe(key, async () => {
          await gate.promise;
          settled = true;
        });
        hub.notify(key, 0, 1);
        const drained = hub.drain();
        gate.resolve();
        await drained;
        assert.equal(settled, true);
      });

      it('close() - drains, removes every observer with "hub-closed", and refuses new work with HERALD_CLOSED', async (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        const reasons: CloseReason[] = [];
        const seen = collect(hub, key);
        hub.observe(key, () => {}, { onClose: (r) => void reasons.push(r) });
        hub.notify(key, 0, 1);
        await hub.close();
        assert.deepEqual(seen.values, [1], 'queued deliveries finish first');
        assert.deepEqual(reasons, ['hub-closed']);
        assert.equal(hub.observerCount(), 0);
        assert.equal(hub.closed, true);
        assert.throws(() => hub.notify(key, 1, 2), { code: 'HERALD_CLOSED' });
        assert.throws(() => hub.observe(key, () => {}), { code: 'HERALD_CLOSED' });
      });
    });

    describe('bad input', () => {
      const badKeys: unknown[] = ['', 42, null, undefined, {}, Symbol('k')];

      it('observe() - a bad key, callback or option throws a coded HeraldError naming it, and registers nothing', (kit) => {
        const hub = kit.make();
        for (const key of badKeys) {
          assert.throws(() => hub.observe(key as string, () => {}), { name: 'InvalidArgumentError', code: 'HERALD_INVALID_KEY', message: /`key`/ });
        }
        assert.throws(() => hub.observe('k', 'nope' as never), { code: 'HERALD_INVALID_CALLBACK', message: /`callback` must be a function, got "nope"/ });
        const cases: [unknown, RegExp][] = [
          [42, /`options`/],
          [{ signal: {} }, /`options.signal`/],
          [{ owner: 7 }, /`options.owner`/],
          [{ isAlive: true }, /`options.isAlive`/],
          [{ onClose: 'x' }, /`options.onClose`/],
          [{ label: 5 }, /`options.label`/],
          [{ queue: { limit: -1 } }, /`options.queue.limit`/],
          [{ queue: { limit: 1.5 } }, /`options.queue.limit`/],
          [{ queue: { overflow: 'drop-all' } }, /`options.queue.overflow`/],
        ];
        for (const [opts, message] of cases) {
          assert.throws(() => hub.observe('k', () => {}, opts as never), { code: 'HERALD_INVALID_OPTION', message });
        }
        assert.equal(hub.observerCount(), 0);
        assert.deepEqual(hub.keys(), []);
        assert.equal(hub.getStats().observersAdded, 0);
      });

      it('observePattern() - a malformed pattern throws HERALD_INVALID_PATTERN and registers nothing', (kit) => {
        const hub = kit.make();
        for (const pattern of ['', 'a/**/b', 'a/b*', '**x', 7]) {
          assert.throws(() => hub.observePattern(pattern as string, () => {}), { code: 'HERALD_INVALID_PATTERN', message: /`pattern`/ });
        }
        assert.deepEqual(hub.patterns(), []);
      });

      it('notify() - a bad key or meta throws, takes no seq and delivers nothing', async (kit) => {
        const hub = kit.make();
        const key = uniqueKey();
        const seen = collect(hub, key);
        for (const bad of badKeys) assert.throws(() => hub.notify(bad as string, 0, 1), { code: 'HERALD_INVALID_KEY' });
        for (const meta of [42, 'm', [1], new Date()]) {
          assert.throws(() => hub.notify(key, 0, 1, meta as never), { code: 'HERALD_INVALID_ARGUMENT', message: /`meta`/ });
        }
        hub.notify(key, 0, 1);
        await drain(hub);
        assert.deepEqual(seen.changes.map((c) => c.seq), [1]);
      });

      it('ObserverManager() - bad options throw HERALD_INVALID_OPTION naming the option', () => {
        const cases: [unknown, RegExp][] = [
          [{ equals: 1 }, /`options.equals`/],
          [{ sweepIntervalMs: -5 }, /`options.sweepIntervalMs`/],
          [{ sweepIntervalMs: Infinity }, /`options.sweepIntervalMs`/],
          [{ onError: 'log' }, /`options.onError`/],
          [{ queue: { overflow: 'nope' } }, /`options.queue.overflow`/],
          [{ callbackTimeoutMs: 0 }, /`options.callbackTimeoutMs`/],
          [{ callbackTimeoutMs: NaN }, /`options.callbackTimeoutMs`/],
        ];
        for (const [opts, message] of cases) {
          assert.throws(() => options.create(opts as HubOptions), { code: 'HERALD_INVALID_OPTION', message });
        }
      });

      it('keys - "__proto__", "constructor" and friends are ordinary keys and pollute nothing', async (kit) => {
        const hub = kit.make();
        const keys = ['__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString'];
        const seen: string[] = [];
        for (const key of keys) hub.observe(key, (c) => void seen.push(c.key));
        for (const key of keys) hub.notify(key, 0, 1, JSON.parse('{"__proto__": {"polluted": true}}') as Record<string, unknown>);
        await drain(hub);
        assert.deepEqual(seen, keys);
        assert.deepEqual(hub.keys().sort(), [...keys].sort());
        assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
        assert.equal(hub.inspect('__proto__').observerCount, 1);
      });
    });
  });
}
