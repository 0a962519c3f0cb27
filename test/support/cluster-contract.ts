import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { jsonCodec, ObserverManager, type Backplane, type BackplaneOptions, type BackplaneState, type Change } from '../../src/index.js';
import { clusteredHub, trapUnhandled, uniqueKey, type ClusteredHub } from './cluster.js';
import { within } from './deadline.js';
import { TcpProxy } from './proxy.js';

/** What the ordering and interest tests need of an engine. */
export interface ClusterContractOptions {
  readonly engine: string;
  /** The engine's URL; a proxy stands in front of it where a test cuts a node off. */
  readonly url: string;
  /** A backplane to the engine at `url`, with `options`; its `engineSubscriptions()` must ask the engine server itself. */
  readonly backplane: (url: string, options?: BackplaneOptions) => Backplane;
  readonly skip: string | false;
}

/** Observed keys in the interest-at-scale test. */
const MANY = 10_000;

/**
 * Ordering and interest on every engine: what a node holds while cut off
 * goes out before anything it notifies later; the engine's subscriptions
 * follow the node's observers across reconnections, at 10 000 keys too;
 * `ready()` keeps its word. Two hubs in this process: `a` talks to the
 * engine directly, `b` through a proxy.
 */
export function clusterContract(options: ClusterContractOptions): void {
  const { engine, url } = options;

  function pair(t: TestContext, name: string, proxy: TcpProxy, bOptions?: BackplaneOptions): { a: ClusteredHub; b: ClusteredHub } {
    const trap = trapUnhandled();
    const key = uniqueKey(name);
    const a = clusteredHub(options.backplane(url), key);
    const b = clusteredHub(options.backplane(proxy.url(url), { onError: () => {}, reconnect: { maxDelayMs: 200 }, ...bOptions }), key);
    t.after(async () => {
      await Promise.all([a.hub.close(), b.hub.close()]);
      await proxy.close();
      trap.stop();
      assert.deepEqual(trap.errors, [], 'no unhandled error or rejection');
    });
    return { a, b };
  }

  /** Resolves the next time `state` is reported. */
  function stateWatch(): { onStateChange: (state: BackplaneState) => void; next(state: BackplaneState): Promise<void> } {
    const waiters = new Map<BackplaneState, (() => void)[]>();
    return {
      onStateChange: (state) => {
        for (const wake of waiters.get(state) ?? []) wake();
        waiters.delete(state);
      },
      next: (state) => within(new Promise<void>((resolve) => waiters.set(state, [...(waiters.get(state) ?? []), resolve])), 15_000, `the backplane to report "${state}"`),
    };
  }

  describe(`${engine} backplane: order and interest`, { skip: options.skip }, () => {
    test('changes held while a node is cut off go out first, in order: changes notified the moment it reconnects never overtake them', { timeout: 60_000 }, async (t) => {
      const proxy = await TcpProxy.start(url);
      const states = stateWatch();
      const late: { node?: ClusteredHub } = {};
      const { a, b } = pair(t, 'fifo', proxy, {
        onStateChange: (state) => {
          states.onStateChange(state);
          const node = late.node;
          if (state !== 'connected' || node === undefined || node.changes.length < 5) return;
          // As soon as the connection is back: one at once, one a microtask later.
          node.hub.notify(node.key, 5, 6);
          queueMicrotask(() => node.hub.notify(node.key, 6, 7));
        },
      });
      late.node = b;
      await Promise.all([a.backplane.ready(), b.backplane.ready()]);
      const lost = states.next('reconnecting');
      proxy.cut();
      await lost;
      for (let i = 1; i <= 5; i++) b.hub.notify(b.key, i - 1, i);
      await b.hub.drain();
      assert.equal(b.hub.getStats().backplane!.buffered, 5);
      proxy.restore();
      await a.until((n) => n.changes.length >= 7, 'the 7 changes of the other node');
      await b.backplane.ready();
      await a.hub.drain();
      assert.deepEqual(a.changes.map((c) => c.newValue), [1, 2, 3, 4, 5, 6, 7], 'every change once, in the order it was notified');
      assert.deepEqual(a.gaps, []);
      const stats = b.hub.getStats().backplane!;
      assert.equal(stats.publishFailed + stats.publishDropped, 0, 'nothing failed or dropped');
    });

    test('after a reconnection that lost changes, the gap signal comes before any change that came after the loss', { timeout: 60_000 }, async (t) => {
      const proxy = await TcpProxy.start(url);
      const states = stateWatch();
      const { a, b } = pair(t, 'gap-order', proxy, { onStateChange: states.onStateChange });
      const seen: (number | 'gap')[] = [];
      b.hub.observe(b.key, (change) => void seen.push(change.newValue as number), { onGap: () => void seen.push('gap') });
      await Promise.all([a.backplane.ready(), b.backplane.ready()]);
      let n = 0;
      let stop = false;
      const publisher = (async () => {
        while (!stop) {
          a.hub.notify(a.key, n, ++n);
          await new Promise((resolve) => setImmediate(resolve));
        }
      })();
      const until = (condition: () => boolean, what: string): Promise<void> => within((async () => {
        while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
      })(), 30_000, what);
      await until(() => seen.length >= 20, 'changes before the cut');
      const lost = states.next('reconnecting');
      proxy.cut();
      await lost;
      const atCut = n;
      await until(() => n >= atCut + 50, 'changes published while cut off');
      const back = states.next('connected');
      proxy.restore();
      await back;
      const atRestore = n;
      await until(() => seen.some((v) => typeof v === 'number' && v > atRestore + 50), 'changes published after the reconnection');
      stop = true;
      await publisher;
      // A hole in the numbers is only allowed after a gap signal that came before it.
      let previous: number | undefined;
      let gapBefore = false;
      for (const item of seen) {
        if (item === 'gap') {
          gapBefore = true;
          continue;
        }
        if (previous !== undefined && item !== previous + 1) {
          assert.ok(gapBefore, `${previous} then ${item}: a hole with no gap signal before it (${engine})`);
          gapBefore = false;
        }
        previous = item;
      }
    });

    test('an observer removed while its node is cut off leaves no engine subscription once the node is back', { timeout: 60_000 }, async (t) => {
      const proxy = await TcpProxy.start(url);
      const states = stateWatch();
      const { b } = pair(t, 'reconcile', proxy, { onStateChange: states.onStateChange });
      const extra = b.hub.observe(uniqueKey('reconcile-extra'), () => {});
      const pattern = b.hub.observePattern(`${uniqueKey('reconcile-pattern')}/*`, () => {});
      await b.backplane.ready();
      assert.equal(await b.backplane.engineSubscriptions(), 3, 'the engine holds the node\'s key, the extra key and the pattern');
      const lost = states.next('reconnecting');
      proxy.cut();
      await lost;
      extra.unsubscribe();
      pattern.unsubscribe();
      const back = states.next('connected');
      proxy.restore();
      await back;
      await b.backplane.ready();
      assert.equal(await b.backplane.engineSubscriptions(), 1, 'the engine holds only what the node still observes');
      assert.equal(b.hub.getStats().backplane!.subscriptions, 1);
    });

    test('a pattern without wildcards receives the changes of its one key from other nodes', { timeout: 60_000 }, async (t) => {
      const proxy = await TcpProxy.start(url);
      const { a, b } = pair(t, 'literal', proxy);
      const key = `${a.key}/literal`;
      let received!: (change: Change) => void;
      const arrived = new Promise<Change>((resolve) => (received = resolve));
      b.hub.observePattern(key, (change) => received(change));
      await Promise.all([a.backplane.ready(), b.backplane.ready()]);
      a.hub.notify(key, 0, 1);
      await a.backplane.ready();
      assert.equal((await within(arrived, 15_000, 'the change of the pattern\'s key')).newValue, 1);
    });

    test(`${MANY.toLocaleString('en')} observed keys: subscribed in batches, held again after a reconnection, gone with close()`, { timeout: 120_000 }, async (t) => {
      const proxy = await TcpProxy.start(url);
      const states = stateWatch();
      const { b } = pair(t, 'many', proxy, { onStateChange: states.onStateChange });
      let started = performance.now();
      const base = uniqueKey('many');
      for (let i = 0; i < MANY; i++) b.hub.observe(`${base}/${i}`, () => {});
      await b.backplane.ready({ timeoutMs: 60_000 });
      const start = performance.now() - started;
      assert.equal(await b.backplane.engineSubscriptions(), MANY + 1);
      const lost = states.next('reconnecting');
      proxy.cut();
      await lost;
      started = performance.now();
      proxy.restore();
      await b.backplane.ready({ timeoutMs: 60_000 });
      const reconnect = performance.now() - started;
      assert.equal(await b.backplane.engineSubscriptions(), MANY + 1);
      started = performance.now();
      await b.hub.close();
      const close = performance.now() - started;
      t.diagnostic(`${engine}, ${MANY} keys: start ${start.toFixed(0)} ms, reconnect ${reconnect.toFixed(0)} ms, close ${close.toFixed(0)} ms`);
    });

    test('ready(): the first state reported is "connecting"; it rejects HERALD_TIMEOUT while the engine is away, its signal\'s reason when aborted, and HERALD_CLOSED when closed first', { timeout: 60_000 }, async (t) => {
      const proxy = await TcpProxy.start(url, { cut: true });
      const states: BackplaneState[] = [];
      const hub = new ObserverManager({ backplane: options.backplane(proxy.url(url), { onError: () => {}, onStateChange: (state) => void states.push(state) }) });
      t.after(async () => {
        await hub.close();
        await proxy.close();
      });
      const backplane = hub.backplane as Backplane;
      assert.deepEqual(states, ['connecting'], 'the first state reaches onStateChange');
      await assert.rejects(backplane.ready({ timeoutMs: 100 }), { code: 'HERALD_TIMEOUT', message: /not ready within 100 ms/ });
      const controller = new AbortController();
      const aborted = backplane.ready({ signal: controller.signal });
      controller.abort(new Error('given up'));
      await assert.rejects(aborted, { message: 'given up' });
      await assert.rejects(backplane.ready({ timeoutMs: -1 }), { code: 'HERALD_INVALID_OPTION' });
      const pending = backplane.ready();
      await hub.close();
      await assert.rejects(within(pending, 5000, 'ready() to settle on close()'), { code: 'HERALD_CLOSED' });
      await assert.rejects(backplane.ready(), { code: 'HERALD_CLOSED' });
      assert.equal(states.at(-1), 'closed');
    });

    test('a node of another codec is told apart: its changes are counted as malformed and reported once, naming both codecs', { timeout: 60_000 }, async (t) => {
      const proxy = await TcpProxy.start(url);
      const errors: unknown[] = [];
      const { a, b } = pair(t, 'codec', proxy, { onError: (error) => void errors.push(error) });
      const other = clusteredHub(options.backplane(url, { codec: { ...jsonCodec, name: 'json-v2' } }), b.key);
      t.after(() => other.hub.close());
      await Promise.all([a.backplane.ready(), b.backplane.ready(), other.backplane.ready()]);
      other.hub.notify(b.key, 0, 'foreign');
      other.hub.notify(b.key, 0, 'foreign again');
      a.hub.notify(a.key, 0, 'native');
      await b.until((n) => n.changes.length === 1, 'the change of the node with the same codec');
      // The other node's changes travel on their own: checked for until they have all arrived.
      await within((async () => {
        while (b.hub.getStats().backplane!.malformed < 2) await new Promise((resolve) => setTimeout(resolve, 10));
      })(), 15_000, 'both changes of the other codec');
      assert.deepEqual(b.changes.map((c) => c.newValue), ['native']);
      assert.equal(b.hub.getStats().backplane!.malformed, 2);
      const reported = errors.filter((e) => (e as { code?: string }).code === 'HERALD_BACKPLANE');
      assert.equal(reported.length, 1, 'reported once');
      assert.match((reported[0] as Error).message, /"json-v2".*"json"/);
    });

    test('-0 is refused by the wire\'s JSON on a clustered hub, before anything is delivered anywhere', { timeout: 60_000 }, async (t) => {
      const proxy = await TcpProxy.start(url);
      const { a, b } = pair(t, 'negative-zero', proxy);
      await Promise.all([a.backplane.ready(), b.backplane.ready()]);
      assert.throws(() => b.hub.notify(b.key, 0, -0), { code: 'HERALD_UNSERIALIZABLE' });
      b.hub.notify(b.key, 0, 1);
      await a.until((n) => n.changes.length === 1, 'the change after the refused one');
      await b.hub.drain();
      assert.deepEqual(b.changes.map((c) => c.newValue), [1]);
      assert.deepEqual(a.changes.map((c) => c.newValue), [1]);
    });
  });
}
