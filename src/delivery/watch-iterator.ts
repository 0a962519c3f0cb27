import type { Gap } from '../core/backplane-port.js';
import { HeraldError } from '../core/errors.js';
import type { Change, CloseReason, ObserveOptions, ObserverCallback, Subscription, WatchOptions } from '../core/types.js';

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
  /** A gap marker not yet taken: it comes before `held`, which arrived after it. */
  gap: Gap | undefined = undefined;
  /** The `HERALD_GAP` error that ends an iterator in `'throw'` mode, until a `next()` takes it. */
  error: HeraldError | undefined = undefined;
  /** `next()` calls waiting for a change, oldest first (the protocol allows several at once). */
  waiters: Waiter<T>[] = [];

  finish(): void {
    this.done = true;
    this.held = undefined;
    this.gap = undefined;
    const release = this.release;
    const waiters = this.waiters;
    this.release = undefined;
    this.waiters = [];
    release?.();
    for (const waiter of waiters) waiter.resolve({ done: true, value: undefined });
  }

  /** A gap in `'throw'` mode: the first waiting (or next) `next()` rejects, then the iterator is done. */
  fail(error: HeraldError): void {
    const waiter = this.waiters.shift();
    this.finish();
    if (waiter !== undefined) waiter.reject(error);
    else this.error = error;
  }
}

interface Waiter<T> {
  resolve(result: IteratorResult<Change<T> | Gap>): void;
  reject(error: unknown): void;
}

/**
 * The iterator behind `hub.watch()`. The hub's own per-observer queue holds
 * what the consumer has not read yet, so its bound, overflow policy and
 * counters apply unchanged; the callback's promise is the back-pressure.
 */
class WatchIterator<T> implements AsyncIterableIterator<Change<T> | Gap> {
  readonly #state: WatchState<T>;

  constructor(state: WatchState<T>) {
    this.#state = state;
  }

  next(): Promise<IteratorResult<Change<T> | Gap>> {
    const state = this.#state;
    if (state.gap !== undefined) {
      const value = state.gap;
      state.gap = undefined;
      return Promise.resolve({ done: false, value });
    }
    if (state.error !== undefined) {
      const error = state.error;
      state.error = undefined;
      return Promise.reject(error);
    }
    if (state.held !== undefined) {
      const value = state.held;
      const release = state.release;
      state.held = undefined;
      state.release = undefined;
      release?.();
      return Promise.resolve({ done: false, value });
    }
    if (state.done) return Promise.resolve({ done: true, value: undefined });
    return new Promise((resolve, reject) => void state.waiters.push({ resolve, reject }));
  }

  return(): Promise<IteratorResult<Change<T> | Gap>> {
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
export function createWatch<T>(register: Register, options: WatchOptions | undefined): AsyncIterableIterator<Change<T> | Gap> {
  const state = new WatchState<T>();
  const iterator = new WatchIterator<T>(state);
  const callback = (change: Change): Promise<void> | undefined => {
    const waiter = state.waiters.shift();
    if (waiter !== undefined) {
      waiter.resolve({ done: false, value: change as Change<T> });
      return undefined;
    }
    state.held = change as Change<T>;
    return new Promise<void>((resolve) => (state.release = resolve));
  };
  // The hub signals a gap only to an idle observer, so nothing is held here when it comes.
  const onGap = options?.gaps === 'yield'
    ? (gap: Gap): void => {
      const waiter = state.waiters.shift();
      if (waiter !== undefined) waiter.resolve({ done: false, value: gap });
      else state.gap = gap;
    }
    : (gap: Gap): void => {
      state.fail(new HeraldError('HERALD_GAP', `the ${gap.engine} backplane may have missed changes (${gap.reason}): re-read the state and watch again`));
      state.sub?.unsubscribe();
    };
  const observeOptions: ObserveOptions = {
    owner: iterator,
    onGap,
    onClose: (_reason: CloseReason) => state.finish(),
    ...(options?.signal === undefined ? {} : { signal: options.signal }),
    ...(options?.queue === undefined ? {} : { queue: options.queue }),
    ...(options?.label === undefined ? {} : { label: options.label }),
  };
  state.sub = register(callback, observeOptions);
  return iterator;
}
