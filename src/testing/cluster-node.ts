import { Backplane } from '../cluster/backplane.js';
import type { ObserverManager } from '../hub/observer-manager.js';
import { SessionStore } from '../store/session-store.js';
import type { SessionStoreBase } from '../store/store.js';
import type { Subscription } from '../core/types.js';

/** A request from the suite's parent process. @internal */
export interface NodeRequest {
  readonly id: number;
  readonly op: string;
  readonly [arg: string]: unknown;
}

/**
 * The body of a node process for {@link backplaneSuite}: makes a clustered
 * hub with `makeHub` and serves the suite's requests over the IPC channel,
 * reporting every change and gap its observers receive. When the suite asks
 * it to close, it closes the hub and lets go of the channel, and the process
 * must then exit by itself: nothing the backplane made may keep it alive.
 *
 * @example
 * ```ts
 * // redis-node.ts, run by the suite as a child process
 * import { ObserverManager } from 'herald';
 * import { RedisBackplane } from 'herald/redis';
 * import { serveClusterNode } from 'herald/testing';
 * serveClusterNode(() => new ObserverManager({ backplane: new RedisBackplane({ prefix: process.env.HERALD_TEST_PREFIX }) }));
 * ```
 */
export function serveClusterNode(
  makeHub: () => ObserverManager | Promise<ObserverManager>,
  options: {
    /** The store the suite's `set` requests write through, on the node's hub. @default an in-memory SessionStore */
    readonly makeStore?: (hub: ObserverManager) => SessionStoreBase;
  } = {},
): void {
  if (typeof process.send !== 'function') throw new Error('serveClusterNode: run me as a child process with an IPC channel (child_process.fork)');
  const send = (message: unknown): void => void process.send!(message);
  const subs = new Map<string, Subscription>();
  let store: SessionStoreBase | undefined;
  const makeStore = options.makeStore ?? ((hub: ObserverManager) => new SessionStore({ hub, expiryCheckMs: 0 }));
  const hubReady = Promise.resolve().then(makeHub);

  const handle = async (hub: ObserverManager, request: NodeRequest): Promise<unknown> => {
    const backplane = hub.backplane!;
    switch (request.op) {
      case 'observe': {
        const key = request['key'] as string;
        const onGap = (gap: { reason: string }): void => send({ event: 'gap', sub: sub.id, reason: gap.reason });
        const callback = (change: { key: string; oldValue: unknown; newValue: unknown; seq: number; at: number; meta: object }): void => {
          send({ event: 'change', sub: sub.id, key: change.key, oldValue: change.oldValue, newValue: change.newValue, seq: change.seq, at: change.at, meta: { ...change.meta } });
        };
        const sub: Subscription = request['pattern'] === true ? hub.observePattern(key, callback, { onGap }) : hub.observe(key, callback, { onGap });
        subs.set(sub.id, sub);
        await backplane.ready();
        return sub.id;
      }
      case 'unobserve':
        subs.get(request['sub'] as string)?.unsubscribe();
        subs.delete(request['sub'] as string);
        await backplane.ready();
        return true;
      case 'notify': {
        const result = hub.notify(request['key'] as string, request['oldValue'], badValue(request['newValue']), request['meta'] as Record<string, unknown> | undefined);
        await backplane.ready();
        return result;
      }
      case 'set': {
        store ??= makeStore(hub);
        const session = request['session'] as string;
        if ((await store.getSession(session)) === undefined) await store.createSession(session);
        if (request['fail'] === true) {
          await store.transaction(session, async (tx) => {
            await tx.set(request['name'] as string, request['value']);
            throw new Error('rolled back on purpose');
          }).catch(() => {});
        } else {
          await store.set(session, request['name'] as string, request['value']);
        }
        await hub.drain();
        await backplane.ready();
        return true;
      }
      case 'stats': {
        const stats = hub.getStats();
        return { ...stats, latency: undefined };
      }
      case 'inspect':
        return hub.inspect(request['key'] as string);
      case 'engineSubscriptions':
        if (!(backplane instanceof Backplane)) throw new Error('engineSubscriptions: the hub\'s backplane is not one of herald\'s');
        return await backplane.engineSubscriptions();
      case 'close':
        await store?.close();
        await hub.close();
        return true;
      default:
        throw new Error(`unknown op ${request.op}`);
    }
  };

  process.on('message', (request: NodeRequest) => {
    void hubReady.then((hub) => handle(hub, request)).then(
      (value) => {
        send({ id: request.id, ok: true, value });
        if (request.op === 'close') process.disconnect();
      },
      (error: unknown) => send({ id: request.id, ok: false, error: { code: (error as { code?: unknown }).code, message: (error as Error).message } }),
    );
  });
}

/** Values that cannot cross the IPC channel are named, and made here. */
function badValue(value: unknown): unknown {
  if (typeof value !== 'object' || value === null || !('bad' in value)) return value;
  const { bad, size } = value as { bad: string; size?: number };
  if (bad === 'bigint') return { count: 10n };
  if (bad === 'function') return { run: () => {} };
  if (bad === 'large') return 'x'.repeat(size ?? 0);
  return value;
}
