import type { Change, Subscription } from '../core/types.js';

/** @internal */
export const errorReporters: WeakMap<object, (sub: Subscription, error: unknown, change: Change) => void> = new WeakMap();
