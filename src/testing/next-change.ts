import { TimeoutError } from '../core/errors.js';
import type { Change } from '../core/types.js';
import type { HubLike } from './hub-like.js';

/** Options of {@link nextChange}. */
export interface NextChangeOptions<T> {
  /** How long to wait before rejecting. @default 5000 */
  readonly timeoutMs?: number;
  /** Only a change for which this returns true counts. */
  readonly filter?: (change: Change<T>) => boolean;
}

/**
 * The next change of `key` (that passes `filter`), as a promise. Its observer
 * is registered at the call, so a change notified right after counts. Rejects
 * with `HERALD_TIMEOUT` and a message saying what it waited for.
 * @example
 * ```ts
 * const next = nextChange(hub, 'session/42/mode');
 * store.set('42', 'mode', 'eco');
 * assert.equal((await next).newValue, 'eco');
 * ```
 */
export function nextChange<T = unknown>(hub: HubLike, key: string, options: NextChangeOptions<T> = {}): Promise<Change<T>> {
  const { timeoutMs = 5000, filter } = options;
  return new Promise((resolve, reject) => {
    const sub = hub.observe<T>(key, (change) => {
      if (filter !== undefined && !filter(change)) return;
      clearTimeout(timer);
      sub.unsubscribe();
      resolve(change);
    });
    const timer = setTimeout(() => {
      sub.unsubscribe();
      const what = filter === undefined ? 'a change' : 'a change passing the filter';
      reject(new TimeoutError(`nextChange(): waited ${timeoutMs} ms for ${what} of ${JSON.stringify(key)}, and none came`));
    }, timeoutMs);
  });
}
