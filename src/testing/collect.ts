import type { Change } from '../core/types.js';
import type { HubLike } from './hub-like.js';

/** What {@link collect} returns. */
export interface Collector<T> {
  /** Every change received so far, in order of arrival. */
  readonly changes: readonly Change<T>[];
  /** The `newValue` of each change received so far. */
  readonly values: readonly T[];
  /** Stops recording (removes the observer) and returns what was recorded. */
  stop(): readonly Change<T>[];
}

/**
 * Records the changes of `key` from now on.
 * @example
 * ```ts
 * const seen = collect(hub, 'cart/7/total');
 * hub.notify('cart/7/total', 10, 12);
 * await hub.drain();
 * assert.deepEqual(seen.values, [12]);
 * seen.stop();
 * ```
 */
export function collect<T = unknown>(hub: HubLike, key: string): Collector<T> {
  const changes: Change<T>[] = [];
  const sub = hub.observe<T>(key, (change) => {
    changes.push(change);
  });
  return {
    changes,
    get values() {
      return changes.map((change) => change.newValue);
    },
    stop() {
      sub.unsubscribe();
      return changes;
    },
  };
}
