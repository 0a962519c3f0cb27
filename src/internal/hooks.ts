import type { Change, Meta, Subscription } from '../types.js';

/**
 * Reports an observer failure that happened outside a hub's own delivery (a
 * store delivering current values first), so that it is counted and reaches
 * `onError` like any other. Filled by each hub for itself; never exported
 * from the package. @internal
 */
/**
 * What a clustered hub offers the code that writes its announcements to an
 * outbox in a transaction: change detection, and local delivery of changes
 * that the outbox announces to the other nodes. Filled by each hub. @internal
 */
export interface LocalDelivery {
  unchanged(oldValue: unknown, newValue: unknown): boolean;
  notifyLocal(key: string, oldValue: unknown, newValue: unknown, meta: Meta): boolean;
}
/** @internal */
export const localDelivery: WeakMap<object, LocalDelivery> = new WeakMap();

export const errorReporters: WeakMap<object, (sub: Subscription, error: unknown, change: Change) => void> = new WeakMap();
