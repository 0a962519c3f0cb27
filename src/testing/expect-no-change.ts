import { AssertionError } from 'node:assert';
import type { HubLike } from './hub-like.js';

/**
 * Proves absence without sleeping: observes `key`, runs `action`, drains the
 * hub, and rejects with an `AssertionError` listing whatever arrived.
 * @example
 * ```ts
 * await expectNoChange(hub, 'cart/7/total', () => {
 *   using pending = hub.defer();
 *   pending.notify('cart/7/total', 10, 12);
 * }); // disposed without commit: nothing announced
 * ```
 */
export async function expectNoChange(hub: HubLike, key: string, action: () => unknown): Promise<void> {
  const arrived: unknown[] = [];
  const sub = hub.observe(key, (change) => {
    arrived.push(change);
  });
  try {
    await action();
    await hub.drain();
  } finally {
    sub.unsubscribe();
  }
  if (arrived.length > 0) {
    throw new AssertionError({
      message: `expected no change of ${JSON.stringify(key)}, but ${arrived.length} arrived`,
      actual: arrived,
      expected: [],
      operator: 'expectNoChange',
    });
  }
}
