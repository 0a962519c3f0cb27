import { ClosedError } from '../core/errors.js';
import { assertObserveOptions } from '../core/assert.js';
import { tracking } from '../core/tracking.js';
import type { ObserveOptions, ObserverCallback, Subscription } from '../core/types.js';
import type { ObserverManager } from './observer-manager.js';

/**
 * A group of observers with one lifetime: `dispose()` (or `using`) removes
 * every observer the scope made that is still there. Handy per request or
 * per component. After disposal, registering through the scope throws `HERALD_CLOSED`.
 */
export class Scope implements Disposable {
  readonly #hub: ObserverManager;
  readonly #subs = new Set<Subscription>();
  #disposed = false;

  /** Usually made by {@link ObserverManager.scope}. */
  constructor(hub: ObserverManager) {
    this.#hub = hub;
  }

  /** Observers of this scope still registered. */
  get size(): number {
    return this.#subs.size;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** As {@link ObserverManager.observe}, owned by this scope. */
  observe<T = unknown>(key: string, callback: ObserverCallback<T>, options?: ObserveOptions): Subscription {
    return this.#track((opts) => this.#hub.observe(key, callback, opts), options);
  }

  /** As {@link ObserverManager.observePattern}, owned by this scope. */
  observePattern<T = unknown>(pattern: string, callback: ObserverCallback<T>, options?: ObserveOptions): Subscription {
    return this.#track((opts) => this.#hub.observePattern(pattern, callback, opts), options);
  }

  /** Removes every observer this scope made. Idempotent; returns how many it removed. */
  dispose(): number {
    this.#disposed = true;
    let removed = 0;
    for (const sub of [...this.#subs]) if (sub.unsubscribe()) removed++;
    this.#subs.clear();
    return removed;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #track(register: (options: ObserveOptions) => Subscription, options: ObserveOptions | undefined): Subscription {
    if (this.#disposed) throw new ClosedError('cannot `observe`: the scope is disposed');
    // Checked before wrapping: the wrapper's own onClose must not hide a bad one of the caller's.
    assertObserveOptions(options);
    const tracked = tracking(this.#subs, options);
    return tracked.track(register(tracked.options));
  }
}
