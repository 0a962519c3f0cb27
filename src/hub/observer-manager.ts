import type { BackplaneLink, BackplanePort, BackplaneSink, Gap } from '../core/backplane-port.js';
import { ClosedError, InvalidArgumentError, TimeoutError } from '../core/errors.js';
import {
  assertCallback, assertKey, assertNever, assertOptions, assertQueue, assertSignal, CLOSE_REASONS, EMPTY_META, freezeMeta,
  invalidKey, optionalDuration, optionalFunction,
} from '../core/assert.js';
import { Deque } from '../core/deque.js';
import { errorReporters } from '../internal/hooks.js';
import { PendingNotifications } from '../delivery/pending.js';
import { createWatch } from '../delivery/watch-iterator.js';
import { channels } from '../stats/diagnostics.js';
import { LatencyRecorder } from '../stats/latency.js';
import type {
  Change, CloseReason, ErrorContext, HubOptions, Inspection, Meta, ObserveOptions, ObserverCallback,
  ObserverInfo, OverflowPolicy, Stats, Subscription, WatchOptions,
} from '../core/types.js';
import { ACTIVE, BUSY, Observer, ObserverExt, PROBED, parseId, type ObserverHost } from './observer.js';
import { parsePattern, PatternTrie } from './pattern.js';
import { ObserverList, SLOW } from './registry.js';
import { Scope } from './scope.js';

export const DEFAULT_QUEUE_LIMIT = 1000;
export const DEFAULT_OVERFLOW: OverflowPolicy = 'drop-oldest';
export const DEFAULT_SWEEP_INTERVAL_MS = 30_000;
export const DEFAULT_CALLBACK_TIMEOUT_MS = 30_000;

/** Internal registration flags that the public options cannot express. */
interface Internal {
  readonly pull?: boolean;
}

/**
 * The notification hub: observers register for a key or a pattern, a store
 * calls `notify` when a key changes, and the hub delivers the change to every
 * observer registered at that moment — asynchronously, in order, isolated
 * from each other, with bounded queues and every outcome counted.
 *
 * @example
 * ```ts
 * const hub = new ObserverManager();
 * using sub = hub.observe('session/42/temperature', (change) => {
 *   console.log(change.key, change.oldValue, '→', change.newValue);
 * });
 * hub.notify('session/42/temperature', 20, 21);   // returns true; the callback runs on the microtask queue
 * await hub.drain();
 * ```
 */
export class ObserverManager {
  /** undefined means Object.is. */
  readonly #equals: ((oldValue: unknown, newValue: unknown) => boolean) | undefined;
  readonly #onError: (error: unknown, context: ErrorContext) => void;
  readonly #defaultLimit: number;
  readonly #defaultOverflow: OverflowPolicy;
  readonly #timeoutMs: number;
  readonly #startedAt = Date.now();
  readonly #backplane: BackplanePort | undefined;
  readonly #link: BackplaneLink | undefined;

  readonly #keys = new Map<string, ObserverList>();
  readonly #patterns = new PatternTrie();
  /** Living pattern observers: while 0, `notify` never looks at the trie. */
  #patternObservers = 0;
  readonly #host: ObserverHost = { release: (observer, reason) => this.#release(observer, reason) };

  #seq = 0;
  #nextObserver = 0;
  #closed = false;
  #closing: Promise<void> | undefined;

  /** Queued dispatch jobs, flat: change, target (a key's list, or a snapshot merged with patterns), snapshot length, sample start (or 0). */
  #jobs: unknown[] = [];
  #jobHead = 0;
  #scheduled = false;
  readonly #flush = (): void => this.#runJobs();

  /** Observers whose returned promise is pending, oldest deadline first. */
  readonly #inFlight = new Set<Observer>();
  /** In-flight deliveries that `drain()` waits for. */
  #busy = 0;
  #timeoutTimer: NodeJS.Timeout | undefined;
  #drainWaiters: (() => void)[] = [];

  /** Observers with an owner or `isAlive`: what a sweep looks at. */
  readonly #probed = new Set<Observer>();
  #owners: FinalizationRegistry<Observer> = this.#createOwnerRegistry();
  /** Observers registered in `#owners` now, and the most since it was made. */
  #ownedCount = 0;
  #ownedPeak = 0;
  readonly #signals = new WeakMap<AbortSignal, { observers: Set<Observer>; onAbort: () => void }>();
  #sweepTimer: NodeJS.Timeout | undefined;

  readonly #latency = new LatencyRecorder();
  readonly #stats = {
    observersAdded: 0, observersRemoved: 0, notifications: 0, notificationsSkipped: 0, fanOut: 0,
    deliveries: 0, deliveryErrors: 0, deliveryTimeouts: 0, dropped: 0, coalesced: 0, cancelled: 0,
    cleanupRuns: 0, deadObserversRemoved: 0, queued: 0, gapSignals: 0,
  };

  constructor(options: HubOptions = {}) {
    assertOptions(options, 'options');
    const { equals, sweepIntervalMs, onError, queue, callbackTimeoutMs, backplane } = options;
    optionalFunction(equals, 'options.equals');
    optionalDuration(sweepIntervalMs, 'options.sweepIntervalMs', false);
    optionalFunction(onError, 'options.onError');
    assertQueue(queue, 'options.queue');
    optionalDuration(callbackTimeoutMs, 'options.callbackTimeoutMs', true);
    if (callbackTimeoutMs === 0) {
      throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.callbackTimeoutMs', 'a number of milliseconds > 0, or Infinity', 0);
    }
    this.#equals = equals === Object.is ? undefined : equals;
    this.#onError = onError ?? defaultOnError;
    this.#defaultLimit = queue?.limit ?? DEFAULT_QUEUE_LIMIT;
    this.#defaultOverflow = queue?.overflow ?? DEFAULT_OVERFLOW;
    this.#timeoutMs = callbackTimeoutMs ?? DEFAULT_CALLBACK_TIMEOUT_MS;
    if (backplane !== undefined && (typeof backplane !== 'object' || backplane === null || typeof backplane.attach !== 'function')) {
      throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.backplane', 'a backplane (herald/redis, herald/nats, herald/postgres)', backplane);
    }
    this.#backplane = backplane;
    // Bound, not an arrow: an arrow here would put `this` in the constructor's context, which the
    // sweep timer's closure below shares, and the timer would keep a dropped hub alive.
    errorReporters.set(this, this.#reportExternal.bind(this));
    const interval = sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
    if (interval > 0) {
      // Held weakly, so that a hub dropped without close() is not kept alive by its own timer.
      const hub = new WeakRef(this);
      const timer = setInterval(() => (hub.deref()?.sweep() ?? clearInterval(timer)), interval).unref();
      this.#sweepTimer = timer;
    }
    this.#link = backplane?.attach(this.#sinkFor());
  }

  /** The backplane that makes this hub one node of a cluster, if it was given one. */
  get backplane(): BackplanePort | undefined {
    return this.#backplane;
  }

  /** `true` once `close()` has been called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Registers `callback` for changes of `key`. The returned handle removes it
   * (`unsubscribe()`, `using`, or `hub.remove(sub)`); removal wins over any
   * change still queued for it.
   * @throws HeraldError `HERALD_INVALID_KEY`, `HERALD_INVALID_CALLBACK`, `HERALD_INVALID_OPTION`, `HERALD_CLOSED`.
   */
  observe<T = unknown>(key: string, callback: ObserverCallback<T>, options?: ObserveOptions): Subscription {
    this.#assertOpen('observe');
    assertKey(key);
    assertCallback(callback);
    checkObserveOptions(options);
    return this.#registerKey(key, callback as ObserverCallback, options);
  }

  /**
   * Registers `callback` for every key that matches `pattern`: `/` separates
   * segments, `*` matches exactly one segment, and `**` as the last segment
   * matches one or more. Otherwise as {@link observe}.
   * @throws HeraldError `HERALD_INVALID_PATTERN` and as {@link observe}.
   */
  observePattern<T = unknown>(pattern: string, callback: ObserverCallback<T>, options?: ObserveOptions): Subscription {
    this.#assertOpen('observePattern');
    const segments = parsePattern(pattern);
    assertCallback(callback);
    checkObserveOptions(options);
    const list = this.#patterns.obtain(pattern, segments, this.#host);
    const sub = this.#register(list, callback as ObserverCallback, options);
    if (sub.active) {
      this.#patternObservers++;
      if (list.size === 1) this.#link?.interest(pattern, true, true);
    } else if (list.size === 0) {
      this.#patterns.delete(list);
    }
    return sub;
  }

  /**
   * Announces that `key` went from `oldValue` to `newValue`. Returns before
   * any callback runs; deliveries start on the microtask queue. Returns
   * `false`, and delivers nothing, when `equals(oldValue, newValue)` says unchanged.
   * @throws HeraldError `HERALD_INVALID_KEY`, `HERALD_INVALID_ARGUMENT` (meta), `HERALD_CLOSED`.
   */
  notify(key: string, oldValue: unknown, newValue: unknown, meta?: Readonly<Record<string, unknown>>): boolean {
    if (this.#closed) throw new ClosedError('cannot `notify`: the hub is closed');
    if (typeof key !== 'string' || key.length === 0) throw invalidKey(key);
    const frozenMeta = meta === undefined ? EMPTY_META : freezeMeta(meta);
    // The default, Object.is, called directly so that the compiler can inline it.
    if (this.#equals === undefined ? Object.is(oldValue, newValue) : this.#equals(oldValue, newValue)) {
      this.#stats.notificationsSkipped++;
      return false;
    }
    if (this.#backplane !== undefined) {
      // Encoded first: a change the wire cannot carry fails here, before any node sees it.
      const at = Date.now();
      const data = this.#link!.encode(key, oldValue, newValue, frozenMeta, at);
      this.#accept(key, oldValue, newValue, frozenMeta, at);
      this.#link!.publish(key, data);
    } else {
      this.#accept(key, oldValue, newValue, frozenMeta, 0);
    }
    return true;
  }

  #unchanged(oldValue: unknown, newValue: unknown): boolean {
    return this.#equals === undefined ? Object.is(oldValue, newValue) : this.#equals(oldValue, newValue);
  }

  /** A change that the backplane has announced to the other nodes already (through a transactional outbox). */
  #notifyLocal(key: string, oldValue: unknown, newValue: unknown, meta: Meta): boolean {
    if (this.#closed) throw new ClosedError('cannot `notify`: the hub is closed');
    if (this.#unchanged(oldValue, newValue)) {
      this.#stats.notificationsSkipped++;
      return false;
    }
    this.#accept(key, oldValue, newValue, meta, 0);
    return true;
  }

  /** Takes a change that passed the checks: gives it a seq and queues its delivery. `at` 0 means now. */
  #accept(key: string, oldValue: unknown, newValue: unknown, frozenMeta: Meta, at: number): void {
    const seq = ++this.#seq;
    this.#stats.notifications++;
    const list = this.#keys.get(key);
    if (list === undefined && this.#patternObservers === 0 && !channels.notify.hasSubscribers) return;

    const change: Change = Object.freeze({ key, oldValue, newValue, meta: frozenMeta, seq, at: at === 0 ? Date.now() : at });
    const merged = this.#patternObservers === 0 ? undefined : this.#snapshotWithPatterns(key, list);
    let target: ObserverList | Observer[] | undefined;
    let length = 0;
    let observers = 0;
    if (merged !== undefined) {
      target = merged;
      length = observers = merged.length;
    } else if (list !== undefined) {
      // The list itself is the snapshot: later additions land past `length`, removals are tombstones.
      target = list;
      length = list.items.length;
      observers = list.size;
      list.enqueued++;
    }
    this.#stats.fanOut += observers;
    if (channels.notify.hasSubscribers) channels.notify.publish({ hub: this, change, observers });
    // A key's list in the map always has a living observer, and a merged snapshot exists only when a pattern matched.
    if (target === undefined) return;
    const t0 = (seq & (LatencyRecorder.SAMPLE_EVERY - 1)) === 0 ? performance.now() : 0;
    this.#jobs.push(change, target, length, t0);
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(this.#flush);
    }
  }

  /**
   * Removes an observer by its handle or id: `true` if it was registered and
   * is now removed, `false` if it was gone already or never existed here.
   * `reason` is what its `onClose` receives; a store ending a session passes `"session-ended"`.
   */
  remove(subOrId: Subscription | string, reason: CloseReason = 'unsubscribed'): boolean {
    if (!CLOSE_REASONS.includes(reason)) {
      throw InvalidArgumentError.expected('HERALD_INVALID_ARGUMENT', 'reason', `one of ${CLOSE_REASONS.join(', ')}`, reason);
    }
    if (subOrId instanceof Observer) return subOrId.list.host === this.#host && this.#release(subOrId, reason);
    if (typeof subOrId !== 'string') {
      throw InvalidArgumentError.expected('HERALD_INVALID_ARGUMENT', 'subOrId', 'a subscription of this hub or its id', subOrId);
    }
    const parsed = parseId(subOrId);
    if (parsed === undefined) return false;
    const list = parsed.isPattern ? this.#patterns.get(parsed.name) : this.#keys.get(parsed.name);
    const observer = list?.find(parsed.n);
    return observer !== undefined && this.#release(observer, reason);
  }

  /**
   * The changes of `key` as an async iterator. Its observer is registered at
   * once (changes from this call on are kept, within the queue bound) and is
   * removed by `break`, `return()`, the signal, or the iterator being
   * garbage-collected unused. `drain()` does not wait for an iterator to be read.
   */
  watch<T = unknown>(key: string, options: WatchOptions & { readonly gaps: 'yield' }): AsyncIterableIterator<Change<T> | Gap>;
  watch<T = unknown>(key: string, options?: WatchOptions): AsyncIterableIterator<Change<T>>;
  watch<T = unknown>(key: string, options?: WatchOptions): AsyncIterableIterator<Change<T> | Gap> {
    this.#assertOpen('watch');
    assertKey(key);
    assertOptions(options, 'options');
    assertSignal(options?.signal, 'options.signal');
    assertQueue(options?.queue, 'options.queue');
    if (options?.label !== undefined && typeof options.label !== 'string') {
      throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.label', 'a string or undefined', options.label);
    }
    if (options?.gaps !== undefined && options.gaps !== 'throw' && options.gaps !== 'yield') {
      throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.gaps', "'throw' or 'yield'", options.gaps);
    }
    return createWatch<T>((callback, observeOptions) => this.#registerKey(key, callback, observeOptions, { pull: true }), options);
  }

  /** A group of observers that `scope.dispose()` removes together. */
  scope(): Scope {
    this.#assertOpen('scope');
    return new Scope(this);
  }

  /**
   * Pending notifications for after a commit: see {@link PendingNotifications}.
   * @example
   * ```ts
   * using pending = hub.defer();
   * pending.notify('cart/7/total', 10, 12);
   * await db.commit();
   * pending.commit();   // without it, disposal discards
   * ```
   */
  defer(): PendingNotifications {
    this.#assertOpen('defer');
    return new PendingNotifications({
      isClosed: () => this.#closed,
      clustered: this.#link !== undefined,
      unchanged: (oldValue, newValue) => this.#unchanged(oldValue, newValue),
      assertEncodable: (key, oldValue, newValue, meta) => this.#link?.assertEncodable(key, oldValue, newValue, meta),
      announce: (key, oldValue, newValue, meta, localOnly) => (localOnly ? this.#notifyLocal(key, oldValue, newValue, meta) : this.notify(key, oldValue, newValue, meta)),
    });
  }

  /** Observers that a change of `key` would reach now (its own and matching patterns'); all observers when omitted. */
  observerCount(key?: string): number {
    if (key === undefined) return this.#activeObservers();
    assertKey(key);
    let count = this.#keys.get(key)?.size ?? 0;
    if (this.#patternObservers > 0) {
      const lists: ObserverList[] = [];
      this.#patterns.match(key, lists);
      for (const list of lists) count += list.size;
    }
    return count;
  }

  /** Keys with at least one observer of their own (patterns are listed by {@link patterns}). */
  keys(): string[] {
    return [...this.#keys.keys()];
  }

  /** Patterns with at least one observer. */
  patterns(): string[] {
    return this.#patterns.patterns();
  }

  /** The observers a change of `key` would reach now, in delivery order, with their counters. */
  inspect(key: string): Inspection {
    assertKey(key);
    const now = Date.now() - this.#startedAt;
    const lists: ObserverList[] = [];
    const own = this.#keys.get(key);
    if (own !== undefined) lists.push(own);
    if (this.#patternObservers > 0) this.#patterns.match(key, lists);
    const observers = lists.flatMap((list) => list.living()).sort((a, b) => a.n - b.n);
    return {
      key,
      observerCount: observers.length,
      observers: observers.map((observer): ObserverInfo => ({
        id: observer.id,
        label: observer.ext?.label,
        pattern: observer.list.pattern === undefined ? undefined : observer.list.name,
        ageMs: now - observer.bornAt,
        alive: this.#isAlive(observer),
        queued: observer.ext?.queue?.length ?? 0,
        delivered: observer.list.visits(observer) + observer.delivered,
        errors: observer.ext?.errors ?? 0,
        dropped: observer.ext?.dropped ?? 0,
        gaps: observer.ext?.gaps ?? 0,
      })),
      ...(this.#backplane === undefined
        ? {}
        : { backplane: { state: this.#backplane.state, subscribed: this.#link!.isSubscribed(key) } }),
    };
  }

  /** Counters since the hub started, and recent dispatch latency. */
  getStats(): Stats {
    const s = this.#stats;
    return {
      ...s,
      activeObservers: this.#activeObservers(),
      keys: this.#keys.size,
      pending: s.fanOut - s.deliveries - s.dropped - s.coalesced - s.cancelled,
      uptimeMs: Date.now() - this.#startedAt,
      latency: this.#latency.snapshot(),
      ...(this.#backplane === undefined ? {} : { backplane: this.#backplane.stats() }),
    };
  }

  /** Runs one cleanup pass now: removes observers whose owner is gone or whose `isAlive` says false. Returns how many. */
  sweep(): number {
    this.#stats.cleanupRuns++;
    let removed = 0;
    for (const observer of [...this.#probed]) {
      if (this.#isAlive(observer)) continue;
      const ownerGone = observer.ext!.owner !== undefined && observer.ext!.owner.deref() === undefined;
      if (this.#release(observer, ownerGone ? 'owner-collected' : 'dead')) removed++;
    }
    this.#stats.deadObserversRemoved += removed;
    return removed;
  }

  /**
   * Resolves when every queued delivery has settled: callbacks invoked, and
   * returned promises settled or timed out. Never rejects. Changes that
   * callbacks notify meanwhile are waited for too; unread `watch()` iterators are not.
   */
  drain(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /**
   * Stops accepting changes and observers, drains, then removes every
   * observer (reason `"hub-closed"`) and stops the timers. Idempotent; never rejects.
   */
  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#closed = true;
    clearInterval(this.#sweepTimer);
    this.#closing = this.drain().then(() => {
      for (const list of [...this.#keys.values(), ...this.#patterns.lists()]) {
        for (const observer of list.living()) this.#release(observer, 'hub-closed');
      }
      clearTimeout(this.#timeoutTimer);
      return this.#backplane?.close();
    });
    return this.#closing;
  }

  // ---- registration and removal ----

  #registerKey(key: string, callback: ObserverCallback, options: ObserveOptions | undefined, internal?: Internal): Observer {
    const list = this.#keys.get(key) ?? new ObserverList(key, this.#host);
    const observer = this.#register(list, callback, options, internal);
    if (list.size === 1 && this.#keys.get(key) !== list) {
      this.#keys.set(key, list);
      this.#link?.interest(key, false, true);
    }
    return observer;
  }

  #register(list: ObserverList, callback: ObserverCallback, options: ObserveOptions | undefined, internal?: Internal): Observer {
    const ext = options === undefined && internal === undefined ? undefined : this.#makeExt(callback, options, internal);
    const state = ext?.isAlive === undefined ? ACTIVE : ACTIVE | PROBED;
    const observer = new Observer(list, ++this.#nextObserver, state, Date.now() - this.#startedAt, ext);
    if (options?.signal?.aborted === true) {
      observer.state = 0;
      callOnClose(observer, 'aborted');
      if (ext !== undefined) ext.callback = undefined;
      return observer;
    }
    list.add(observer, callback);
    this.#stats.observersAdded++;
    if (ext !== undefined) this.#attachLifecycle(observer, ext, options);
    if (channels.observer.hasSubscribers) {
      channels.observer.publish({ hub: this, event: 'added', id: observer.id, key: list.name });
    }
    return observer;
  }

  #makeExt(callback: ObserverCallback, options: ObserveOptions | undefined, internal: Internal | undefined): ObserverExt {
    const ext = new ObserverExt(callback, options?.queue?.limit ?? this.#defaultLimit, options?.queue?.overflow ?? this.#defaultOverflow);
    if (options !== undefined) {
      ext.label = options.label;
      ext.onClose = options.onClose;
      ext.onGap = options.onGap;
      ext.isAlive = options.isAlive;
      ext.signal = options.signal;
      if (options.owner !== undefined) ext.owner = new WeakRef(options.owner);
    }
    ext.pull = internal?.pull === true;
    return ext;
  }

  #attachLifecycle(observer: Observer, ext: ObserverExt, options: ObserveOptions | undefined): void {
    if (options?.owner !== undefined) {
      this.#owners.register(options.owner, observer, observer);
      this.#ownedPeak = Math.max(this.#ownedPeak, ++this.#ownedCount);
    }
    if (ext.owner !== undefined || ext.isAlive !== undefined) this.#probed.add(observer);
    const signal = ext.signal;
    if (signal === undefined) return;
    // One listener per signal, however many observers share it: no MaxListenersExceededWarning.
    let entry = this.#signals.get(signal);
    if (entry === undefined) {
      const observers = new Set<Observer>();
      const onAbort = (): void => {
        for (const each of [...observers]) this.#release(each, 'aborted');
      };
      entry = { observers, onAbort };
      this.#signals.set(signal, entry);
      signal.addEventListener('abort', onAbort, { once: true });
    }
    entry.observers.add(observer);
  }

  #createOwnerRegistry(): FinalizationRegistry<Observer> {
    return new FinalizationRegistry<Observer>((observer) => {
      if (this.#release(observer, 'owner-collected')) this.#stats.deadObserversRemoved++;
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
      if (observer.ext?.owner === undefined) continue;
      const owner = observer.ext.owner.deref();
      if (owner === undefined) orphans.push(observer); // collected, its finalizer not yet run
      else next.register(owner, observer, observer);
    }
    this.#owners = next;
    this.#ownedPeak = this.#ownedCount;
    queueMicrotask(() => {
      for (const observer of orphans) if (this.#release(observer, 'owner-collected')) this.#stats.deadObserversRemoved++;
    });
  }

  #release(observer: Observer, reason: CloseReason): boolean {
    if ((observer.state & ACTIVE) === 0) return false;
    observer.state = 0;
    const list = observer.list;
    list.delete(observer); // its slot becomes SLOW: the callback is no longer held there
    if (list.size === 0) {
      if (list.pattern === undefined) {
        if (this.#keys.get(list.name) === list) {
          this.#keys.delete(list.name);
          this.#link?.interest(list.name, false, false);
        }
      } else {
        this.#patterns.delete(list);
        this.#link?.interest(list.name, true, false);
      }
    }
    if (list.pattern !== undefined) this.#patternObservers--;
    this.#stats.observersRemoved++;
    const ext = observer.ext;
    if (ext !== undefined) this.#detachLifecycle(observer, ext);
    if (channels.observer.hasSubscribers) {
      channels.observer.publish({ hub: this, event: 'removed', id: observer.id, key: list.name, reason });
    }
    if (ext?.onClose !== undefined) callOnClose(observer, reason);
    if (ext !== undefined) ext.callback = undefined;
    return true;
  }

  #detachLifecycle(observer: Observer, ext: ObserverExt): void {
    const queue = ext.queue;
    if (queue !== undefined && queue.length > 0) {
      this.#stats.cancelled += queue.length;
      this.#stats.queued -= queue.length;
      queue.clear();
    }
    this.#probed.delete(observer);
    if (ext.owner !== undefined) {
      this.#owners.unregister(observer);
      this.#ownedCount--;
      if (this.#ownedPeak >= 1024 && this.#ownedCount * 4 < this.#ownedPeak) this.#rebuildOwnerRegistry();
    }
    if (ext.signal !== undefined) {
      const entry = this.#signals.get(ext.signal);
      if (entry !== undefined) {
        entry.observers.delete(observer);
        if (entry.observers.size === 0) {
          ext.signal.removeEventListener('abort', entry.onAbort);
          this.#signals.delete(ext.signal);
        }
      }
    }
  }

  // ---- delivery ----

  /** The living observers of `key` and its matching patterns in registration order; undefined when no pattern matches. */
  #snapshotWithPatterns(key: string, own: ObserverList | undefined): Observer[] | undefined {
    const lists: ObserverList[] = [];
    this.#patterns.match(key, lists);
    if (lists.length === 0) return undefined;
    if (own !== undefined) lists.push(own);
    const living = lists.flatMap((list) => list.living());
    return lists.length === 1 ? living : living.sort((a, b) => a.n - b.n);
  }

  #runJobs(): void {
    const jobs = this.#jobs;
    while (this.#jobHead < jobs.length) {
      const i = this.#jobHead;
      const change = jobs[i] as Change;
      const target = jobs[i + 1] as ObserverList | Observer[] | null;
      const length = jobs[i + 2] as number;
      const t0 = jobs[i + 3] as number;
      jobs[i] = jobs[i + 1] = undefined;
      this.#jobHead = i + 4;
      if (t0 !== 0) this.#latency.record(performance.now() - t0);
      if (target instanceof ObserverList) this.#dispatchList(change, target, length);
      else if (target === null) this.#dispatchGap(change as unknown as Gap);
      else this.#dispatchMerged(change, target);
      // A long chain of re-entrant notifies must not grow the job list without end.
      if (this.#jobHead >= 4096 && this.#jobHead * 2 >= jobs.length) {
        jobs.splice(0, this.#jobHead);
        this.#jobHead = 0;
      }
    }
    jobs.length = 0;
    this.#jobHead = 0;
    this.#scheduled = false;
    this.#settleDrain();
  }

  /**
   * The hot loop: for an idle observer it reads nothing but its callback from
   * the dense `fns` array. Anything else (`SLOW`) takes the slow path.
   */
  #dispatchList(change: Change, list: ObserverList, length: number): void {
    const fns = list.fns;
    const items = list.items;
    let delivered = 0;
    for (let i = 0; i < length; i++) {
      const fn = fns[i]!;
      if (fn === SLOW) {
        this.#dispatchSlow(items[i]!, change, list);
        continue;
      }
      delivered++;
      let result: unknown;
      try {
        result = fn(change);
      } catch (error) {
        this.#report(items[i]!, error, change);
        continue;
      }
      if (result !== undefined && isThenable(result)) this.#await(items[i]!, result, change);
    }
    this.#stats.deliveries += delivered;
    list.finishJob();
  }

  /** A list's observer that is removed, busy or probed. Counts as a visit: see {@link Observer.delivered}. */
  #dispatchSlow(observer: Observer, change: Change, list: ObserverList): void {
    const state = observer.state;
    if ((state & ACTIVE) === 0) {
      // Removed after this change was notified (this job is number dispatched + 1): removal wins, and it is counted.
      if (list.dispatched < observer.leaveMark) {
        this.#stats.cancelled++;
        observer.delivered--;
      }
    } else if ((state & BUSY) !== 0) {
      this.#offer(observer, observer.ext!, change);
      observer.delivered--;
    } else if (!this.#deliverChecked(observer, change)) {
      observer.delivered--;
    }
  }

  /** A snapshot merged from a key's own observers and its patterns': these were all living at notify time. */
  #dispatchMerged(change: Change, observers: readonly Observer[]): void {
    for (const observer of observers) {
      const state = observer.state;
      if ((state & ACTIVE) === 0) this.#stats.cancelled++;
      else if ((state & BUSY) !== 0) this.#offer(observer, observer.ext!, change);
      else if (this.#deliverChecked(observer, change)) observer.delivered++;
    }
  }

  /** Delivers after the `isAlive` probe, if any; returns whether the callback was invoked. */
  #deliverChecked(observer: Observer, change: Change): boolean {
    if ((observer.state & PROBED) !== 0 && !this.#isAlive(observer)) {
      if (this.#release(observer, 'dead')) this.#stats.deadObserversRemoved++;
      this.#stats.cancelled++;
      return false;
    }
    this.#stats.deliveries++;
    let result: unknown;
    try {
      result = observer.list.callbackOf(observer)(change);
    } catch (error) {
      this.#report(observer, error, change);
      return true;
    }
    if (result !== undefined && isThenable(result)) this.#await(observer, result, change);
    return true;
  }

  /**
   * A gap signal reaches every observer with an `onGap`, after the changes
   * already queued for it: at once for an idle observer (this job runs after
   * every change queued before it), or once a busy one has worked off its queue.
   */
  #dispatchGap(gap: Gap): void {
    for (const list of [...this.#keys.values(), ...this.#patterns.lists()]) {
      for (const observer of list.living()) {
        const ext = observer.ext;
        if (ext?.onGap === undefined) continue;
        if (ext.gap === undefined) {
          ext.gaps++;
          this.#stats.gapSignals++;
        }
        ext.gap = gap;
        if ((observer.state & BUSY) === 0) this.#deliverGap(observer, ext);
      }
    }
  }

  #deliverGap(observer: Observer, ext: ObserverExt): void {
    const gap = ext.gap!;
    ext.gap = undefined;
    if ((observer.state & ACTIVE) === 0) return;
    try {
      ext.onGap!(gap);
    } catch {
      // Contained like onClose: a throwing onGap never reaches the backplane or the other observers.
      ext.errors++;
    }
  }

  /** What the backplane calls: remote changes and gap signals. A method, so the constructor's closures never hold `this`. */
  #sinkFor(): BackplaneSink {
    return {
      deliver: (key, oldValue, newValue, meta, at) => {
        if (!this.#closed) this.#accept(key, oldValue, newValue, freezeMeta(meta), at);
      },
      gap: (gap) => {
        if (this.#closed) return;
        this.#jobs.push(gap, null, 0, 0);
        if (!this.#scheduled) {
          this.#scheduled = true;
          queueMicrotask(this.#flush);
        }
      },
    };
  }

  /** Admits a change to a busy observer's queue, applying its overflow policy when full. */
  #offer(observer: Observer, ext: ObserverExt, change: Change): void {
    const queue = (ext.queue ??= new Deque<Change>());
    const stats = this.#stats;
    if (queue.length < ext.limit) {
      queue.push(change);
      stats.queued++;
      return;
    }
    const policy = ext.overflow;
    switch (policy) {
      case 'drop-oldest':
        if (queue.length > 0) {
          queue.shift();
          queue.push(change);
        }
        break;
      case 'drop-newest':
        break;
      case 'coalesce':
        if (this.#coalesce(queue, change)) return;
        if (queue.length > 0) {
          queue.shift();
          queue.push(change);
        }
        break;
      case 'disconnect':
        stats.dropped++;
        ext.dropped++;
        this.#release(observer, 'slow-consumer');
        return;
      default:
        assertNever(policy);
    }
    stats.dropped++;
    ext.dropped++;
  }

  /**
   * Merges `change` into the newest pending change of its key: oldest
   * `oldValue`, newest `newValue`, `meta`, `seq` and `at`. The merged change
   * moves to the back, so `seq` still grows along the queue. A merge that
   * returns to where it started leaves nothing to deliver.
   * Returns false when no pending change has that key.
   */
  #coalesce(queue: Deque<Change>, change: Change): boolean {
    for (let i = queue.length - 1; i >= 0; i--) {
      const pending = queue.at(i)!;
      if (pending.key !== change.key) continue;
      queue.removeAt(i);
      this.#stats.coalesced++;
      if (this.#equals === undefined ? Object.is(pending.oldValue, change.newValue) : this.#equals(pending.oldValue, change.newValue)) {
        this.#stats.coalesced++;
        this.#stats.queued--;
      } else {
        queue.push(Object.freeze({ ...change, oldValue: pending.oldValue }));
      }
      return true;
    }
    return false;
  }

  #await(observer: Observer, promise: PromiseLike<unknown>, change: Change): void {
    const ext = this.#extOf(observer);
    observer.state |= BUSY;
    observer.list.refresh(observer);
    const token = ++ext.token;
    ext.current = change;
    if (!ext.pull) {
      this.#busy++;
      if (this.#timeoutMs !== Infinity) {
        ext.deadline = performance.now() + this.#timeoutMs;
        this.#inFlight.add(observer);
        this.#timeoutTimer ??= setTimeout(this.#expire, this.#timeoutMs);
      }
    }
    const settle = (): void => this.#settle(observer, ext, token);
    try {
      promise.then(settle, (error: unknown) => {
        if (ext.token === token) this.#report(observer, error, change);
        settle();
      });
    } catch (error) {
      this.#report(observer, error, change);
      settle();
    }
  }

  #settle(observer: Observer, ext: ObserverExt, token: number): void {
    if (ext.token !== token) return; // timed out already
    ext.token++;
    ext.current = undefined;
    this.#finishInFlight(observer, ext);
  }

  #finishInFlight(observer: Observer, ext: ObserverExt): void {
    if (!ext.pull) {
      this.#busy--;
      this.#inFlight.delete(observer);
      if (this.#inFlight.size === 0 && this.#timeoutTimer !== undefined) {
        // Nothing left to time out: the timer must not hold the process open.
        clearTimeout(this.#timeoutTimer);
        this.#timeoutTimer = undefined;
      }
    }
    if ((observer.state & ACTIVE) !== 0) {
      observer.state &= ~BUSY;
      this.#pump(observer, ext);
      if ((observer.state & BUSY) === 0) {
        observer.list.refresh(observer);
        if (ext.gap !== undefined) this.#deliverGap(observer, ext);
      }
    }
    this.#settleDrain();
  }

  /** Delivers an observer's queued changes until one returns a promise again. */
  #pump(observer: Observer, ext: ObserverExt): void {
    const queue = ext.queue;
    if (queue === undefined) return;
    while (queue.length > 0 && (observer.state & (ACTIVE | BUSY)) === ACTIVE) {
      const change = queue.shift()!;
      this.#stats.queued--;
      if (this.#deliverChecked(observer, change)) observer.delivered++;
    }
  }

  readonly #expire = (): void => {
    this.#timeoutTimer = undefined;
    const now = performance.now();
    for (const observer of this.#inFlight) {
      const ext = observer.ext!;
      if (ext.deadline > now) {
        clearTimeout(this.#timeoutTimer); // a pump in this loop may have armed one for a later deadline
        this.#timeoutTimer = setTimeout(this.#expire, Math.ceil(ext.deadline - now));
        return;
      }
      ext.token++;
      this.#stats.deliveryTimeouts++;
      const change = ext.current!;
      this.#report(observer, new TimeoutError(`observer \`${observer.id}\` did not settle within callbackTimeoutMs (${this.#timeoutMs} ms) for change ${change.seq} of ${JSON.stringify(change.key)}`), change);
      this.#finishInFlight(observer, ext);
    }
  };

  #report(observer: Observer, error: unknown, change: Change): void {
    this.#stats.deliveryErrors++;
    const ext = this.#extOf(observer);
    ext.errors++;
    const context: ErrorContext = { key: change.key, observerId: observer.id, change };
    if (channels.error.hasSubscribers) channels.error.publish({ hub: this, error, context });
    try {
      this.#onError(error, context);
    } catch {
      // An onError that throws is contained: the notifier and the other observers never see it.
    }
  }

  // ---- small helpers ----

  /** Reports a failure of an observer's callback that happened outside this hub's delivery. */
  #reportExternal(sub: Subscription, error: unknown, change: Change): void {
    if (sub instanceof Observer && sub.list.host === this.#host) this.#report(sub, error, change);
  }

  /** The observer's ext, made on first need (the observer is active: its callback is still in its slot). */
  #extOf(observer: Observer): ObserverExt {
    return (observer.ext ??= new ObserverExt(observer.list.callbackOf(observer), this.#defaultLimit, this.#defaultOverflow));
  }

  #isAlive(observer: Observer): boolean {
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

  #isIdle(): boolean {
    return this.#jobs.length === 0 && this.#busy === 0;
  }

  #settleDrain(): void {
    if (this.#drainWaiters.length === 0 || !this.#isIdle()) return;
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const resolve of waiters) resolve();
  }

  #activeObservers(): number {
    return this.#stats.observersAdded - this.#stats.observersRemoved;
  }

  #assertOpen(method: string): void {
    if (this.#closed) throw new ClosedError(`cannot \`${method}\`: the hub is closed`);
  }
}

function checkObserveOptions(options: ObserveOptions | undefined): void {
  if (options === undefined) return;
  assertOptions(options, 'options');
  assertSignal(options.signal, 'options.signal');
  if (options.owner !== undefined && (typeof options.owner !== 'object' || options.owner === null) && typeof options.owner !== 'function') {
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.owner', 'an object or undefined', options.owner);
  }
  optionalFunction(options.isAlive, 'options.isAlive');
  optionalFunction(options.onClose, 'options.onClose');
  optionalFunction(options.onGap, 'options.onGap');
  if (options.label !== undefined && typeof options.label !== 'string') {
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.label', 'a string or undefined', options.label);
  }
  assertQueue(options.queue, 'options.queue');
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

function callOnClose(observer: Observer, reason: CloseReason): void {
  const onClose = observer.ext?.onClose;
  if (onClose === undefined) return;
  observer.ext!.onClose = undefined;
  try {
    onClose(reason);
  } catch {
    // A throwing onClose must not stop the removal that called it.
  }
}

function defaultOnError(error: unknown, context: ErrorContext): void {
  console.error(`herald: observer ${context.observerId} of ${JSON.stringify(context.key)} failed:`, error);
}
