import type { ObserveOptions, ObserverManager, Subscription } from '../../src/index.js';
import { within } from './deadline.js';

/**
 * An observer of `key` that records each change's new value and holds on the
 * change to 1 (its returned promise stays pending) until `release()`:
 * what the tests of queues and ordering need an observer to be busy with.
 */
export function holdsOnFirst(hub: ObserverManager, key: string, options?: ObserveOptions): {
  readonly sub: Subscription;
  readonly seen: unknown[];
  /** Resolves once change 1 is in flight (with a deadline). */
  readonly inFlight: () => Promise<void>;
  readonly release: () => void;
} {
  const seen: unknown[] = [];
  let release: () => void = () => {};
  let started!: () => void;
  const running = new Promise<void>((resolve) => (started = resolve));
  const sub = hub.observe(key, (change) => {
    seen.push(change.newValue);
    if (change.newValue !== 1) return undefined;
    started();
    return new Promise<void>((resolve) => (release = resolve));
  }, options);
  return { sub, seen, inFlight: () => within(running, 5000, 'change 1 in flight'), release: () => release() };
}
