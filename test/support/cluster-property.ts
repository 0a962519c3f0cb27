import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ObserverManager, type Backplane, type BackplaneOptions, type BackplaneState, type Subscription } from '../../src/index.js';
import { trapUnhandled, uniqueKey } from './cluster.js';
import { within } from './deadline.js';
import { TcpProxy } from './proxy.js';

/** What the property needs of an engine. */
export interface ClusterPropertyOptions {
  readonly engine: string;
  readonly url: string;
  readonly backplane: (url: string, options?: BackplaneOptions) => Backplane;
  readonly skip: string | false;
  /** @default 15 */
  readonly runs?: number;
}

type Action =
  | { readonly kind: 'notify'; readonly node: number; readonly key: number }
  | { readonly kind: 'cut' }
  | { readonly kind: 'restore' }
  | { readonly kind: 'observe'; readonly node: number; readonly key: number }
  | { readonly kind: 'unsubscribe'; readonly node: number };

const NODES = 3;
const KEYS = 2;

const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('notify' as const), node: fc.nat(NODES - 1), key: fc.nat(KEYS - 1) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'cut' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'restore' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('observe' as const), node: fc.nat(NODES - 1), key: fc.nat(KEYS + 1) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('unsubscribe' as const), node: fc.nat(NODES - 1) }) },
);

/**
 * Random cuts, restores, observes, unsubscribes and notifies against one
 * engine, three nodes in this process (node 1 through a proxy that is cut
 * and restored). Afterwards, on every node: per origin, the changes of each
 * key arrive in the order they were notified and none twice; a node that
 * signalled no gap received every change of every origin, the cut one
 * included (what it held or lost in transit is sent again); and the engine holds
 * exactly the subscriptions the node's observers want.
 */
export function clusterProperty(options: ClusterPropertyOptions): void {
  test(`${options.engine} backplane: under random cuts, restores, observes, unsubscribes and notifies, every change arrives once in per-origin order or a gap covers it, and engine subscriptions equal interest`, { skip: options.skip, timeout: 300_000 }, async () => {
    await fc.assert(fc.asyncProperty(fc.array(action, { minLength: 5, maxLength: 40 }), (actions) => run(options, actions)), { numRuns: options.runs ?? 15, endOnFailure: true, includeErrorInReport: true });
  });
}

async function run(options: ClusterPropertyOptions, actions: readonly Action[]): Promise<void> {
  const trap = trapUnhandled();
  const proxy = await TcpProxy.start(options.url);
  const base = uniqueKey(`${options.engine}-property`);
  const keys = Array.from({ length: KEYS + 2 }, (_, i) => `${base}/${i}`);
  const waiters = new Map<BackplaneState, (() => void)[]>();
  const hubs = Array.from({ length: NODES }, (_, i) => new ObserverManager({
    sweepIntervalMs: 0,
    backplane: options.backplane(i === 1 ? proxy.url(options.url) : options.url, {
      onError: () => {},
      reconnect: { maxDelayMs: 200 },
      maxBuffered: 100_000,
      ...(i === 1 ? { onStateChange: (state) => {
        for (const wake of waiters.get(state) ?? []) wake();
        waiters.delete(state);
      } } : {}),
    }),
  }));
  const next = (state: BackplaneState): Promise<void> => within(new Promise<void>((resolve) => waiters.set(state, [...(waiters.get(state) ?? []), resolve])), 15_000, `node 1 to report "${state}"`);
  /** received[node][key] = values in arrival order; values are `${origin}:${number}`. */
  const received = hubs.map(() => keys.slice(0, KEYS).map(() => [] as string[]));
  const gaps = hubs.map(() => 0);
  hubs.forEach((hub, node) => {
    for (let key = 0; key < KEYS; key++) {
      hub.observe(keys[key]!, (change) => void received[node]![key]!.push(change.newValue as string), { onGap: () => void gaps[node]!++ });
    }
  });
  const extras = hubs.map(() => [] as Subscription[]);
  const sent = hubs.map(() => keys.slice(0, KEYS).map(() => [] as string[]));
  let cut = false;
  let counter = 0;
  try {
    await Promise.all(hubs.map((hub) => (hub.backplane as Backplane).ready({ timeoutMs: 30_000 })));
    for (const step of actions) {
      switch (step.kind) {
        case 'notify': {
          const value = `${step.node}:${++counter}`;
          const list = sent[step.node]![step.key]!;
          hubs[step.node]!.notify(keys[step.key]!, list.at(-1), value);
          list.push(value);
          break;
        }
        case 'cut':
          if (cut) break;
          cut = true;
          {
            // Cut while connected: waits until node 1 has noticed. Cut while it is still reconnecting: nothing to notice.
            const lost = hubs[1]!.backplane!.state === 'connected' ? next('reconnecting') : undefined;
            proxy.cut();
            await lost;
          }
          break;
        case 'restore':
          if (!cut) break;
          cut = false;
          proxy.restore();
          break;
        case 'observe':
          extras[step.node]!.push(hubs[step.node]!.observe(keys[step.key]!, () => {}));
          break;
        case 'unsubscribe':
          extras[step.node]!.pop()?.unsubscribe();
          break;
      }
    }
    if (cut) proxy.restore();
    await Promise.all(hubs.map((hub) => (hub.backplane as Backplane).ready({ timeoutMs: 30_000 })));
    // A last change from every origin on every key: once it has arrived everywhere, everything before it has too.
    for (let node = 0; node < NODES; node++) {
      for (let key = 0; key < KEYS; key++) {
        const value = `${node}:${++counter}`;
        hubs[node]!.notify(keys[key]!, sent[node]![key]!.at(-1), value);
        sent[node]![key]!.push(value);
      }
    }
    await within((async () => {
      for (;;) {
        const done = received.every((perKey) => perKey.every((values, key) => hubs.every((_, origin) => values.includes(sent[origin]![key]!.at(-1)!))));
        if (done) return;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })(), 30_000, 'the last change of every origin on every node');
    await Promise.all(hubs.map((hub) => hub.drain()));

    for (let node = 0; node < NODES; node++) {
      for (let key = 0; key < KEYS; key++) {
        const values = received[node]![key]!;
        assert.equal(new Set(values).size, values.length, `node ${node}, key ${key}: no change twice (${values.join(' ')})`);
        for (let origin = 0; origin < NODES; origin++) {
          const fromOrigin = values.filter((v) => v.startsWith(`${origin}:`));
          const order = fromOrigin.map((v) => sent[origin]![key]!.indexOf(v));
          assert.ok(order.every((at, i) => at >= 0 && (i === 0 || at > order[i - 1]!)), `node ${node}, key ${key}, origin ${origin}: in the order notified (${fromOrigin.join(' ')})`);
          if (gaps[node] === 0) {
            const missing = sent[origin]![key]!.filter((v) => !values.includes(v));
            assert.deepEqual(missing, [], `node ${node} signalled no gap, so it received every change of origin ${origin} on key ${key}`);
          }
        }
      }
      const wanted = new Set([...hubs[node]!.keys()]).size;
      assert.equal(await (hubs[node]!.backplane as Backplane).engineSubscriptions(), wanted, `node ${node}: the engine holds exactly the keys it observes`);
    }
  } finally {
    await Promise.all(hubs.map((hub) => hub.close()));
    await proxy.close();
    trap.stop();
  }
  assert.deepEqual(trap.errors, [], 'no unhandled error or rejection');
}
