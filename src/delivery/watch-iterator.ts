import type { Change, CloseReason, ObserveOptions, ObserverCallback, Subscription, WatchOptions } from '../types.js';

type Register = (callback: ObserverCallback, options: ObserveOptions) => Subscription;

/**
 * What the observer callback and the iterator share. It must never point at
 * the iterator: the iterator is the observer's weakly held owner, so an
 * iterator dropped unread takes its observer with it.
 */
class WatchState<T> {
  sub: Subscription | undefined = undefined;
  done = false;
  /** A change handed over by the hub that no `next()` has taken yet. */
  held: Change<T> | undefined = undefined;
  /** Tells the hub the held change was taken, so it may hand over the next one. */
  release: (() => void) | undefined = undefined;
  /** `next()` calls waiting for a change, oldest first (the protocol allows several at once). */
  waiters: ((result: IteratorResult<Change<T>>) => void)[] = [];

  finish(): void {
    this.done = true;
    this.held = undefined;
    const release = this.release;
    const waiters = this.waiters;
    this.release = undefined;
    this.waiters = [];
    release?.();
    for (const waiter of waiters) waiter({ done: true, value: undefined });
  }
}

/**
 * The iterator behind `hub.watch()`. The hub's own per-observer queue holds
 * what the consumer has not read yet, so its bound, overflow policy and
 * counters apply unchanged; the callback's promise is the back-pressure.
 */
class WatchIterator<T> implements AsyncIterableIterator<Change<T>> {
  readonly #state: WatchState<T>;

  constructor(state: WatchState<T>) {
    this.#state = state;
  }

  next(): Promise<IteratorResult<Change<T>>> {
    const state = this.#state;
    if (state.held !== undefined) {
      const value = state.held;
      const release = state.release;
      state.held = undefined;
      state.release = undefined;
      release?.();
      return Promise.resolve({ done: false, value });
    }
    if (state.done) return Promise.resolve({ done: true, value: undefined });
    return new Promise((resolve) => void state.waiters.push(resolve));
  }

  return(): Promise<IteratorResult<Change<T>>> {
    const state = this.#state;
    state.sub?.unsubscribe();
    state.finish();
    return Promise.resolve({ done: true, value: undefined });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

/** @internal */
export function createWatch<T>(register: Register, options: WatchOptions | undefined): AsyncIterableIterator<Change<T>> {
  const state = new WatchState<T>();
  const iterator = new WatchIterator<T>(state);
  const callback = (change: Change): Promise<void> | undefined => {
    const waiter = state.waiters.shift();
    if (waiter !== undefined) {
      waiter({ done: false, value: change as Change<T> });
      return undefined;
    }
    state.held = change as Change<T>;
    return new Promise<void>((resolve) => (state.release = resolve));
  };
  const observeOptions: ObserveOptions = {
    owner: iterator,
    onClose: (_reason: CloseReason) => state.finish(),
    ...(options?.signal === undefined ? {} : { signal: options.signal }),
    ...(options?.queue === undefined ? {} : { queue: options.queue }),
    ...(options?.label === undefined ? {} : { label: options.label }),
  };
  state.sub = register(callback, observeOptions);
  return iterator;
}
