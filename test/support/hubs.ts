import type { Change, ObserveOptions, ObserverCallback, ObserverManager, Subscription } from '../../src/index.js';
import type { ConformingHub } from '../../src/testing.js';

type Observe = ConformingHub['observe'];

/** `hub` as a {@link ConformingHub}, with some of its methods replaced. */
export function wrapHub(hub: ObserverManager, overrides: Partial<ConformingHub> = {}): ConformingHub {
  return {
    observe: hub.observe.bind(hub),
    observePattern: hub.observePattern.bind(hub),
    notify: hub.notify.bind(hub),
    remove: hub.remove.bind(hub),
    watch: hub.watch.bind(hub),
    scope: hub.scope.bind(hub),
    defer: hub.defer.bind(hub),
    observerCount: hub.observerCount.bind(hub),
    keys: hub.keys.bind(hub),
    patterns: hub.patterns.bind(hub),
    inspect: hub.inspect.bind(hub),
    getStats: hub.getStats.bind(hub),
    sweep: hub.sweep.bind(hub),
    drain: hub.drain.bind(hub),
    close: hub.close.bind(hub),
    get closed() {
      return hub.closed;
    },
    ...overrides,
  };
}

/** Wraps every callback registered through `observe` and `observePattern` with `wrap`. */
function wrapCallbacks(hub: ObserverManager, wrap: (callback: ObserverCallback<unknown>) => ObserverCallback<unknown>): ConformingHub {
  const through = (register: Observe): Observe => ((key: string, callback: ObserverCallback<unknown>, options?: ObserveOptions): Subscription =>
    // A callback that is no function goes through as it is, for the hub to refuse.
    register(key, typeof callback === 'function' ? wrap(callback) : callback, options)) as Observe;
  return wrapHub(hub, { observe: through(hub.observe.bind(hub)), observePattern: through(hub.observePattern.bind(hub)) });
}

/**
 * A correct hub that starts each delivery `ticks` microtasks after the hub
 * would: every callback runs that much later. The conformance suite must pass
 * it, except where it tells sync callbacks from async ones (every callback
 * of this hub is async to the hub underneath).
 */
export function lateHub(hub: ObserverManager, ticks: number): ConformingHub {
  return wrapCallbacks(hub, (callback) => async (change: Change<unknown>) => {
    for (let i = 0; i < ticks; i++) await Promise.resolve();
    return callback(change);
  });
}

/** A hub whose observers' callbacks throw `error` after they have run: nothing else is wrong with it. */
export function throwingHub(hub: ObserverManager, error: Error): ConformingHub {
  return wrapCallbacks(hub, (callback) => (change: Change<unknown>) => {
    const result = callback(change);
    if (result !== undefined) return result;
    throw error;
  });
}
