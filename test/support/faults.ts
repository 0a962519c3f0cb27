import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { Backplane, BackplaneOptions } from '../../src/index.js';
import { clusteredHub, trapUnhandled, uniqueKey, type ClusteredHub } from './cluster.js';
import { within } from './deadline.js';
import { TcpProxy } from './proxy.js';

/** What the fault tests need of an engine. */
export interface FaultTestOptions {
  readonly engine: string;
  /** The engine's URL; the proxy stands in front of it. */
  readonly url: string;
  /** A backplane to the engine at `url`, with `options` (and the test's own namespace). */
  readonly backplane: (url: string, options?: BackplaneOptions) => Backplane;
  /** Kills the backplane's subscriber connection from the server side, described as `name`; for engines that can. */
  readonly kill?: { readonly name: string; run(backplane: Backplane): Promise<void> };
  /**
   * True when the engine replays what a node missed (PostgreSQL's outbox):
   * every change arrives after the reconnection, none twice, and no gap is
   * signalled. False when it cannot (Redis, NATS): a gap signal, then later changes flow.
   */
  readonly replays: boolean;
  readonly skip: string | false;
}

/** Changes notified while one node is cut off. */
const MISSED = 1000;

/**
 * The fault tests every backplane passes: its subscriber connection killed
 * by the server, cut and restored by a TCP proxy with 1 000 changes made
 * meanwhile, and the engine unreachable when the hub starts. Two hubs in this
 * process: node `a` talks to the engine directly, node `b` through the proxy.
 */
export function faultTests(options: FaultTestOptions): void {
  const { engine, url, replays, kill } = options;

  /** Two nodes observing one key; `b` through `proxy` when given. */
  function pair(t: TestContext, name: string, proxy?: TcpProxy, bOptions?: BackplaneOptions): { a: ClusteredHub; b: ClusteredHub } {
    const trap = trapUnhandled();
    const key = uniqueKey(name);
    const a = clusteredHub(options.backplane(url), key);
    // Short reconnection delays: attempts while cut off back off no further than 200 ms.
    const b = clusteredHub(options.backplane(proxy?.url(url) ?? url, { onError: () => {}, reconnect: { maxDelayMs: 200 }, ...bOptions }), key);
    t.after(async () => {
      await Promise.all([a.hub.close(), b.hub.close()]);
      await proxy?.close();
      trap.stop();
      assert.deepEqual(trap.errors, [], 'no unhandled error or rejection');
    });
    return { a, b };
  }

  /** Node `a` notifies `count` changes, numbered from `from`, and waits until the engine has them. */
  async function notifyMany(a: ClusteredHub, from: number, count: number): Promise<void> {
    for (let i = from; i < from + count; i++) a.hub.notify(a.key, i - 1, i);
    await a.backplane.ready();
  }

  /** After a loss: every missed change replayed in order and none twice (replaying engines), or a gap signal; then a later change flows. */
  async function expectRecovery(a: ClusteredHub, b: ClusteredHub, missed: number): Promise<void> {
    if (replays) {
      await b.until((n) => n.changes.length >= missed);
    } else {
      await b.until((n) => n.gaps.length === 1);
      assert.equal(b.gaps[0]!.reason, 'reconnected');
      assert.equal(b.gaps[0]!.engine, engine);
    }
    await b.backplane.ready();
    const key = a.key;
    a.hub.notify(key, 'before', 'after');
    await b.until((n) => n.changes.at(-1)?.newValue === 'after');
    const values = b.changes.map((c) => c.newValue);
    if (replays) {
      assert.deepEqual(values, [...Array.from({ length: missed }, (_, i) => i + 1), 'after'], 'each missed change once, in order, then the later one');
      assert.deepEqual(b.gaps, [], 'a complete replay is no gap');
    } else {
      assert.equal(values.at(-1), 'after');
      assert.equal(b.changes.filter((c) => c.newValue === 'after').length, 1);
    }
    const stats = b.hub.getStats().backplane!;
    assert.equal(stats.state, 'connected');
    assert.ok(stats.reconnects >= 1, 'the reconnection is counted');
  }

  describe(`${engine} backplane faults`, { skip: options.skip }, () => {
    if (kill !== undefined) test(`the subscriber connection killed by the server (${kill.name}) while ${MISSED} changes are made: no crash, it reconnects, ${replays ? 'every change arrives once, in order' : 'a gap signal, later changes flow'}`, { timeout: 60_000 }, async (t) => {
      const { a, b } = pair(t, 'kill');
      await Promise.all([a.backplane.ready(), b.backplane.ready()]);
      await kill.run(b.backplane);
      await notifyMany(a, 1, MISSED);
      // Whatever arrived before the kill took hold counts; the rest is replayed or signalled.
      await expectRecovery(a, b, replays ? MISSED : 0);
    });

    test(`${MISSED} changes while one node is cut off by a TCP proxy: local delivery goes on, and after the restore ${replays ? 'every change arrives once, in order, with no gap' : 'a gap signal, and later changes flow'}`, { timeout: 60_000 }, async (t) => {
      const proxy = await TcpProxy.start(url);
      let noticed!: () => void;
      const lost = new Promise<void>((resolve) => (noticed = resolve));
      const { a, b } = pair(t, 'cut', proxy, { onStateChange: (state) => state === 'reconnecting' && noticed() });
      await Promise.all([a.backplane.ready(), b.backplane.ready()]);
      proxy.cut();
      await within(lost, 15_000, 'the backplane to notice the cut (state "reconnecting")');
      await notifyMany(a, 1, MISSED);
      const key = b.key;
      b.hub.notify(key, 'b', 'from b while cut off');
      await b.hub.drain();
      assert.equal(b.changes.filter((c) => c.newValue === 'from b while cut off').length, 1, 'local delivery works while the engine is away');
      b.changes.length = 0;
      proxy.restore();
      await expectRecovery(a, b, replays ? MISSED : 0);
      await a.until((n) => n.changes.some((c) => c.newValue === 'from b while cut off'));
      assert.equal(b.hub.getStats().backplane!.publishFailed, 0, 'the change made while cut off was kept and sent, not lost');
    });

    test('the engine unreachable when the hub starts: no crash, local delivery works, changes wait in the bounded buffer, and it connects once the engine is back', { timeout: 60_000 }, async (t) => {
      const proxy = await TcpProxy.start(url, { cut: true });
      const { a, b } = pair(t, 'unreachable', proxy, { maxBuffered: 2 });
      await a.backplane.ready();
      const key = b.key;
      for (let i = 1; i <= 3; i++) b.hub.notify(key, i - 1, i);
      await b.hub.drain();
      assert.deepEqual(b.changes.map((c) => c.newValue), [1, 2, 3], 'local delivery works');
      let stats = b.hub.getStats().backplane!;
      assert.equal(stats.state, 'connecting');
      assert.equal(stats.buffered, 2);
      assert.equal(stats.publishDropped, 1, 'the oldest change past maxBuffered is dropped, and counted');
      proxy.restore();
      await b.backplane.ready();
      await a.until((n) => n.changes.length === 2);
      assert.deepEqual(a.changes.map((c) => c.newValue), [2, 3], 'the buffered changes are sent once connected, in order');
      a.hub.notify(key, 'x', 'y');
      await b.until((n) => n.changes.length === 4);
      stats = b.hub.getStats().backplane!;
      assert.equal(stats.reconnects, 0, 'a first connection is no reconnection');
      assert.deepEqual(b.gaps, [], 'and no gap: nothing was subscribed before');
    });

    test('close() while the engine is unreachable counts the changes still waiting as dropped', { timeout: 60_000 }, async (t) => {
      const proxy = await TcpProxy.start(url, { cut: true });
      const { b } = pair(t, 'dropped', proxy);
      b.hub.notify(b.key, 0, 1);
      b.hub.notify(b.key, 1, 2);
      assert.equal(b.hub.getStats().backplane!.buffered, 2);
      await b.hub.close();
      const stats = b.hub.getStats().backplane!;
      assert.equal(stats.state, 'closed');
      assert.equal(stats.buffered, 0);
      assert.equal(stats.publishDropped, 2, 'nothing is lost uncounted');
    });

    test('close() resolves when the connection is cut with a send and an unsubscription in flight', { timeout: 60_000 }, async (t) => {
      const proxy = await TcpProxy.start(url);
      const { a, b } = pair(t, 'close', proxy);
      await Promise.all([a.backplane.ready(), b.backplane.ready()]);
      proxy.cut();
      b.hub.notify(b.key, 0, 1);
      await b.hub.drain();
      b.subscription.unsubscribe();
      await b.hub.close();
      assert.equal(b.hub.getStats().backplane!.state, 'closed');
      assert.deepEqual(b.changes.map((c) => c.newValue), [1]);
    });
  });
}
