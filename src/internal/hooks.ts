import type { Change, Subscription } from '../types.js';

/**
 * Reports an observer failure that happened outside a hub's own delivery (a
 * store delivering current values first), so that it is counted and reaches
 * `onError` like any other. Filled by each hub for itself; never exported
 * from the package. @internal
 */
export const errorReporters: WeakMap<object, (sub: Subscription, error: unknown, change: Change) => void> = new WeakMap();
