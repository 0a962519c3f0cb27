import type { CloseReason } from '../core/types.js';
import type { Observer, ObserverExt } from '../hub/observer.js';

/** What the tracker needs of its hub: removing an observer, and counting the ones found dead. */
export interface LifecycleHost {
  release(observer: Observer, reason: CloseReason): boolean;
  /** Observers removed because their owner was collected or `isAlive` said false. */
  countDead(removed: number): void;
}

/**
 * Keeps every observer from outliving its owner: the abort signal, the
 * weakly held owner (a FinalizationRegistry, with the sweep as a backstop),
 * and the `isAlive` probe. It removes through its host and never delivers.
 */
export class LifecycleTracker {
  readonly #host: LifecycleHost;
  /** Observers with an owner or `isAlive`: what a sweep looks at. */
  readonly #probed = new Set<Observer>();
  #owners: FinalizationRegistry<Observer>;
  /** Observers registered in `#owners` now, and the most since it was made. */
  #ownedCount = 0;
  #ownedPeak = 0;
  readonly #signals = new WeakMap<AbortSignal, { observers: Set<Observer>; onAbort: () => void }>();
  #sweepTimer: NodeJS.Timeout | undefined;

  constructor(host: LifecycleHost) {
    this.#host = host;
    this.#owners = this.#createOwnerRegistry();
  }

  /** Starts watching a newly registered observer's signal, owner and probe. */
  attach(observer: Observer, ext: ObserverExt): void {
    const owner = ext.owner?.deref();
    if (owner !== undefined) {
      this.#owners.register(owner, observer, observer);
      this.#ownedPeak = Math.max(this.#ownedPeak, ++this.#ownedCount);
    }
    if (ext.owner !== undefined || ext.isAlive !== undefined) this.#probed.add(observer);
    const signal = ext.signal;
    if (signal === undefined) return;
    // One listener per signal, however many observers share it: no MaxListenersExceededWarning.
    let entry = this.#signals.get(signal);
    if (entry === undefined) {
      const observers = new Set<Observer>();
      const host = this.#host;
      const onAbort = (): void => {
        for (const each of [...observers]) host.release(each, 'aborted');
      };
      entry = { observers, onAbort };
      this.#signals.set(signal, entry);
      signal.addEventListener('abort', onAbort, { once: true });
    }
    entry.observers.add(observer);
  }

  /** Stops watching a removed observer. */
  detach(observer: Observer, ext: ObserverExt): void {
    this.#probed.delete(observer);
    if (ext.owner !== undefined) {
      this.#owners.unregister(observer);
      this.#ownedCount--;
      if (this.#ownedPeak >= 1024 && this.#ownedCount * 4 < this.#ownedPeak) this.#rebuildOwnerRegistry();
    }
    const signal = ext.signal;
    if (signal === undefined) return;
    const entry = this.#signals.get(signal);
    if (entry === undefined) return;
    entry.observers.delete(observer);
    if (entry.observers.size === 0) {
      signal.removeEventListener('abort', entry.onAbort);
      this.#signals.delete(signal);
    }
  }

  /** False once the observer's owner is collected or its `isAlive` says false (or throws). */
  isAlive(observer: Observer): boolean {
    const ext = observer.ext;
    if (ext === undefined) return true;
    if (ext.owner !== undefined && ext.owner.deref() === undefined) return false;
    if (ext.isAlive === undefined) return true;
    try {
      return ext.isAlive() !== false;
    } catch {
      return false;
    }
  }

  /** One cleanup pass: removes the observers that are no longer alive. Returns how many. */
  sweep(): number {
    let removed = 0;
    for (const observer of [...this.#probed]) {
      if (this.isAlive(observer)) continue;
      const ownerGone = observer.ext!.owner !== undefined && observer.ext!.owner.deref() === undefined;
      if (this.#host.release(observer, ownerGone ? 'owner-collected' : 'dead')) removed++;
    }
    this.#host.countDead(removed);
    return removed;
  }

  /** Calls `target.sweep()` every `intervalMs` on an unref'd timer that holds the target weakly. */
  startSweeping(target: { sweep(): number }, intervalMs: number): void {
    this.stopSweeping();
    this.#sweepTimer = sweepTimer(new WeakRef(target), intervalMs);
  }

  stopSweeping(): void {
    clearInterval(this.#sweepTimer);
    this.#sweepTimer = undefined;
  }

  #createOwnerRegistry(): FinalizationRegistry<Observer> {
    const host = this.#host;
    return new FinalizationRegistry<Observer>((observer) => {
      if (host.release(observer, 'owner-collected')) host.countDead(1);
    });
  }

  /**
   * V8 never shrinks a FinalizationRegistry's table of unregister tokens, so
   * after a crowd of owners has come and gone the registry is replaced by one
   * that holds only the survivors. Amortised O(1) per removal.
   */
  #rebuildOwnerRegistry(): void {
    const next = this.#createOwnerRegistry();
    const orphans: Observer[] = [];
    for (const observer of this.#probed) {
      const owner = observer.ext?.owner;
      if (owner === undefined) continue;
      const target = owner.deref();
      if (target === undefined) orphans.push(observer); // collected, its finalizer not yet run
      else next.register(target, observer, observer);
    }
    this.#owners = next;
    this.#ownedPeak = this.#ownedCount;
    const host = this.#host;
    queueMicrotask(() => {
      let removed = 0;
      for (const observer of orphans) if (host.release(observer, 'owner-collected')) removed++;
      host.countDead(removed);
    });
  }
}

/** Its own function, so that the timer's closure holds nothing but the weak reference. */
function sweepTimer(target: WeakRef<{ sweep(): number }>, intervalMs: number): NodeJS.Timeout {
  const timer: NodeJS.Timeout = setInterval(() => {
    if (target.deref()?.sweep() === undefined) clearInterval(timer);
  }, intervalMs).unref();
  return timer;
}
