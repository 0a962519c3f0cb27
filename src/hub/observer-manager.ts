import type { BackplanePort, Gap } from '../core/backplane-port.js';
import { ClosedError, InvalidArgumentError } from '../core/errors.js';
import {
  assertCallback, assertKey, assertObserveOptions, assertOptions, assertQueue, assertReason, assertWatchOptions, EMPTY_META, freezeMeta,
  invalidKey, optionalDuration, optionalFunction, toChange,
} from '../core/assert.js';
import type {
  Change, CloseReason, ErrorContext, HubOptions, Inspection, Meta, ObserveOptions, ObserverCallback,
  ObserverInfo, OverflowPolicy, Stats, Subscription, WatchOptions,
} from '../core/types.js';
import { callContained } from '../delivery/contain.js';
import { Dispatcher } from '../delivery/dispatcher.js';
import { PendingNotifications, type BatchTarget } from '../delivery/pending.js';
import { createWatch } from '../delivery/watch-iterator.js';
import { LifecycleTracker } from '../lifecycle/lifecycle-tracker.js';
import { Counters } from '../stats/counters.js';
import { channels, type ErrorMessage, type NotifyMessage, type ObserverMessage } from '../stats/diagnostics.js';
import { LatencyRecorder } from '../stats/latency.js';
import { ClusterLink } from './cluster-link.js';
import { ACTIVE, Observer, ObserverExt, PROBED, type ObserverHost } from './observer.js';
import type { ObserverList } from './observer-list.js';
import { matchesPattern, parsePattern } from './pattern.js';
import { Registry } from './registry.js';
import { Scope } from './scope.js';

export const DEFAULT_QUEUE_LIMIT = 1000;
export const DEFAULT_OVERFLOW: OverflowPolicy = 'drop-oldest';
export const DEFAULT_SWEEP_INTERVAL_MS = 30_000;
export const DEFAULT_CALLBACK_TIMEOUT_MS = 30_000;

/**
 * The notification hub: observers register for a key or a pattern, a store
 * calls `notify` when a key changes, and the hub delivers the change to every
 * observer registered at that moment — asynchronously, in order, isolated
 * from each other, with bounded queues and every outcome counted.
 *
 * A facade: the {@link Registry} knows who observes what, the
 * {@link Dispatcher} delivers (each busy observer through its own
 * `Mailbox`), the {@link LifecycleTracker} removes observers whose owner is
 * gone, and the {@link ClusterLink} carries changes to and from other nodes.
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
  readonly #onError: (error: unknown, context: ErrorContext) => unknown;
  readonly #defaultLimit: number;
  readonly #defaultOverflow: OverflowPolicy;
  readonly #startedAt = Date.now();
  readonly #counters = new Counters();
  readonly #latency = new LatencyRecorder();
  readonly #host: ObserverHost = { release: (observer, reason) => this.#release(observer, reason) };
  readonly #registry: Registry;
  readonly #dispatcher: Dispatcher;
  readonly #lifecycle: LifecycleTracker;
  readonly #cluster: ClusterLink | undefined;
  #batchTarget: BatchTarget | undefined;

  #seq = 0;
  #nextObserver = 0;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(options: HubOptions = {}) {
    assertOptions(options, 'options');
    const { equals, sweepIntervalMs, onError, queue, callbackTimeoutMs, backplane } = options;
    optionalFunction(equals, 'options.equals');
    optionalDuration(sweepIntervalMs, 'options.sweepIntervalMs', 0, false);
    optionalFunction(onError, 'options.onError');
    assertQueue(queue, 'options.queue');
    optionalDuration(callbackTimeoutMs, 'options.callbackTimeoutMs', 1, true);
    this.#equals = equals === Object.is ? undefined : equals;
    this.#onError = onError ?? defaultOnError;
    this.#defaultLimit = queue?.limit ?? DEFAULT_QUEUE_LIMIT;
    this.#defaultOverflow = queue?.overflow ?? DEFAULT_OVERFLOW;
    this.#cluster = backplane === undefined ? undefined : new ClusterLink(backplane, {
      deliver: (key, oldValue, newValue, meta, at) => {
        if (!this.#closed) this.#accept(key, oldValue, newValue, freezeMeta(meta), at);
      },
      gap: (gap: Gap) => {
        if (!this.#closed) this.#dispatcher.enqueueGap(gap);
      },
    });
    this.#registry = new Registry(this.#host, this.#cluster?.interest);
    this.#lifecycle = new LifecycleTracker({
      release: (observer, reason) => this.#release(observer, reason),
      countDead: (removed) => void (this.#counters.deadObserversRemoved += removed),
    });
    this.#dispatcher = new Dispatcher({
      counters: this.#counters,
      latency: this.#latency,
      equals: this.#equals ?? Object.is,
      callbackTimeoutMs: callbackTimeoutMs ?? DEFAULT_CALLBACK_TIMEOUT_MS,
      defaultLimit: this.#defaultLimit,
      defaultOverflow: this.#defaultOverflow,
      report: (error, context) => this.#report(error, context),
      release: (observer, reason) => this.#release(observer, reason),
      deadReason: (observer) => this.#deadReason(observer),
      countDead: (removed) => void (this.#counters.deadObserversRemoved += removed),
      lists: () => this.#registry.lists(),
    });
    const interval = sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
    if (interval > 0) this.#lifecycle.startSweeping(this, interval);
  }

  /** The backplane that makes this hub one node of a cluster, if it was given one. */
  get backplane(): BackplanePort | undefined {
    return this.#cluster?.port;
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
    this.#cluster?.assertKey(key, false);
    assertCallback(callback);
    assertObserveOptions(options);
    return this.#register(this.#registry.listFor(key), callback as ObserverCallback, options, false);
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
    this.#cluster?.assertKey(pattern, true);
    assertCallback(callback);
    assertObserveOptions(options);
    const list = this.#registry.listFor(pattern, segments);
    const sub = this.#register(list, callback as ObserverCallback, options, false);
    if (!sub.active) this.#registry.abandon(list);
    return sub;
  }

  /**
   * Announces that `key` went from `oldValue` to `newValue`. Returns before
   * any callback runs; deliveries start on the microtask queue. Returns
   * `false`, and delivers nothing, when `equals(oldValue, newValue)` says unchanged.
   * @throws HeraldError `HERALD_INVALID_KEY`, `HERALD_INVALID_ARGUMENT` (meta), `HERALD_CLOSED`,
   * and on a clustered hub `HERALD_UNSERIALIZABLE` or `HERALD_TOO_LARGE` (nothing is delivered anywhere).
   */
  notify(key: string, oldValue: unknown, newValue: unknown, meta?: Readonly<Record<string, unknown>>): boolean {
    if (this.#closed) throw new ClosedError('cannot `notify`: the hub is closed');
    if (typeof key !== 'string' || key.length === 0) throw invalidKey(key);
    const frozenMeta = meta === undefined ? EMPTY_META : freezeMeta(meta);
    // The default, Object.is, called directly so that the compiler can inline it.
    if (this.#equals === undefined ? Object.is(oldValue, newValue) : this.#equals(oldValue, newValue)) {
      this.#counters.notificationsSkipped++;
      return false;
    }
    const cluster = this.#cluster;
    if (cluster === undefined) {
      this.#accept(key, oldValue, newValue, frozenMeta, 0);
    } else {
      // Encoded first: a change the wire cannot carry fails here, before any node sees it.
      const at = Date.now();
      const data = cluster.encode(key, oldValue, newValue, frozenMeta, at);
      this.#accept(key, oldValue, newValue, frozenMeta, at);
      cluster.publish(key, data);
    }
    return true;
  }

  /**
   * Hands `change` to the observer `sub` only, ahead of every change queued
   * for it or not yet dispatched to it (and behind those handed to it this way
   * before), outside its queue bound, with its `callbackTimeoutMs`, `onError`
   * and counters (it adds one to `fanOut`). What a store uses to give a new
   * watcher the current values before any later change. The observer receives
   * a frozen copy: `meta` a frozen plain object, `seq` 0 and `at` now unless given.
   * Returns `false`, delivering nothing, when `sub` is no longer registered.
   * @throws HeraldError `HERALD_INVALID_ARGUMENT` for a handle that is not a living one of this hub's
   * or a change that is not one, `HERALD_CLOSED`.
   */
  deliverTo<T = unknown>(sub: Subscription, change: Change<T>): boolean {
    this.#assertOpen('deliverTo');
    const observer = this.#handleOf(sub);
    const copy = toChange(change);
    if (observer.list.isPattern ? !matchesPattern(observer.list.name, copy.key) : copy.key !== observer.list.name) {
      throw InvalidArgumentError.expected('HERALD_INVALID_ARGUMENT', 'change.key', `a key that \`sub\` observes (${JSON.stringify(observer.key)})`, copy.key);
    }
    if (!isLiving(observer)) return false;
    this.#dispatcher.deliverTo(observer, copy);
    return true;
  }

  /**
   * Takes a change that passed the checks: gives it a seq and queues its
   * delivery. `at` 0 means now. Nothing is counted until the targets are
   * known, so a failure in between changes nothing.
   */
  #accept(key: string, oldValue: unknown, newValue: unknown, meta: Meta, at: number): void {
    const registry = this.#registry;
    const own = registry.listOf(key);
    if (own === undefined && !registry.hasPatterns && !channels.notify.hasSubscribers) {
      // Nobody to tell: the change only takes its seq.
      this.#seq++;
      this.#counters.notifications++;
      return;
    }
    let lists: ObserverList[] | undefined;
    if (registry.hasPatterns) {
      const matched: ObserverList[] = [];
      registry.matchPatterns(key, matched);
      if (matched.length > 0) {
        if (own !== undefined) matched.push(own);
        lists = matched;
      }
    }
    const seq = ++this.#seq;
    this.#counters.notifications++;
    const publishing = channels.notify.hasSubscribers;
    if (own === undefined && lists === undefined && !publishing) return;

    const change: Change = Object.freeze({ key, oldValue, newValue, meta, seq, at: at === 0 ? Date.now() : at });
    let observers = own?.size ?? 0;
    if (lists !== undefined) {
      observers = 0;
      for (const list of lists) observers += list.size;
    }
    this.#counters.fanOut += observers;
    if (publishing) channels.notify.publish({ hub: this, change, observers } satisfies NotifyMessage);
    const t0 = (seq & (LatencyRecorder.SAMPLE_EVERY - 1)) === 0 ? performance.now() : 0;
    if (lists === undefined) {
      if (own !== undefined) this.#dispatcher.enqueueList(change, own, own.items.length, t0);
    } else if (lists.length === 1) {
      this.#dispatcher.enqueueList(change, lists[0]!, lists[0]!.items.length, t0);
    } else {
      this.#dispatcher.enqueueMerged(change, lists, t0);
    }
  }

  /**
   * Removes an observer by its handle or id: `true` if it was registered and
   * is now removed, `false` if it was gone already or never existed here.
   * `reason` is what its `onClose` receives; a store ending a session passes `"session-ended"`.
   * @throws HeraldError `HERALD_INVALID_ARGUMENT` for a `subOrId` or `reason` that is not one.
   */
  remove(subOrId: Subscription | string, reason: CloseReason = 'unsubscribed'): boolean {
    assertReason(reason);
    if (subOrId instanceof Observer) return subOrId.list.host === this.#host && this.#release(subOrId, reason);
    if (typeof subOrId !== 'string') {
      throw InvalidArgumentError.expected('HERALD_INVALID_ARGUMENT', 'subOrId', 'a subscription of this hub or its id', subOrId);
    }
    const observer = this.#registry.find(subOrId);
    return observer !== undefined && this.#release(observer, reason);
  }

  /**
   * Removes an observer once every change notified before this call has
   * reached it (delivered, or dropped or coalesced by its queue's policy),
   * after its own queue and nobody else's; changes notified from now on
   * never reach it. `true` if it was registered; `onClose` gets `reason`.
   * What a store uses to end a session's watchers after the session's removals.
   * @throws HeraldError `HERALD_INVALID_ARGUMENT` for a `sub` or `reason` that is not one, `HERALD_CLOSED`.
   */
  removeAfterQueued(sub: Subscription, reason: CloseReason = 'unsubscribed'): boolean {
    this.#assertOpen('removeAfterQueued');
    assertReason(reason);
    const observer = this.#handleOf(sub);
    if (!isLiving(observer)) return false;
    this.#dispatcher.removeAfterQueued(observer, reason);
    return true;
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
    this.#cluster?.assertKey(key, false);
    assertWatchOptions(options);
    return createWatch<T>((callback, observeOptions) => this.#register(this.#registry.listFor(key), callback, observeOptions, true), options);
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
    return new PendingNotifications((this.#batchTarget ??= this.#makeBatchTarget()));
  }

  /** Observers that a change of `key` would reach now (its own and matching patterns'); all observers when omitted. */
  observerCount(key?: string): number {
    if (key === undefined) return this.#activeObservers();
    assertKey(key);
    return this.#registry.countFor(key);
  }

  /** Keys with at least one observer of their own (patterns are listed by {@link patterns}). */
  keys(): string[] {
    return this.#registry.keys();
  }

  /** Patterns with at least one observer. */
  patterns(): string[] {
    return this.#registry.patterns();
  }

  /** The observers a change of `key` would reach now, in delivery order, with their counters. */
  inspect(key: string): Inspection {
    assertKey(key);
    const now = Date.now() - this.#startedAt;
    const observers = this.#registry.observersOf(key);
    return {
      key,
      observerCount: observers.length,
      observers: observers.map((observer): ObserverInfo => ({
        id: observer.id,
        label: observer.ext?.label,
        pattern: observer.list.isPattern ? observer.list.name : undefined,
        ageMs: now - observer.bornAt,
        alive: this.#deadReason(observer) === undefined,
        queued: (observer.ext?.mailbox?.length ?? 0) + (observer.ext?.prelude?.length ?? 0),
        delivered: observer.list.visits(observer) + observer.delivered,
        errors: observer.ext?.errors ?? 0,
        dropped: observer.ext?.dropped ?? 0,
        gaps: observer.ext?.gaps ?? 0,
      })),
      ...(this.#cluster === undefined ? {} : { backplane: this.#cluster.inspect(key) }),
    };
  }

  /** Counters since the hub started, and recent dispatch latency. */
  getStats(): Stats {
    return this.#counters.toStats({
      keys: this.#registry.keyCount,
      uptimeMs: Date.now() - this.#startedAt,
      latency: this.#latency.snapshot(),
      ...(this.#cluster === undefined ? {} : { backplane: this.#cluster.stats() }),
    });
  }

  /** Runs one cleanup pass now: removes observers whose owner is gone or whose `isAlive` says false. Returns how many. */
  sweep(): number {
    this.#counters.cleanupRuns++;
    return this.#lifecycle.sweep();
  }

  /**
   * Resolves when every queued delivery has settled: callbacks invoked, and
   * returned promises settled or timed out. Never rejects. Changes that
   * callbacks notify meanwhile are waited for too; unread `watch()` iterators are not.
   */
  drain(): Promise<void> {
    return this.#dispatcher.drain();
  }

  /**
   * Stops accepting changes and observers, drains, then removes every
   * observer (reason `"hub-closed"`), stops the timers and closes the
   * backplane. Idempotent; never rejects.
   */
  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#closed = true;
    this.#lifecycle.stopSweeping();
    this.#closing = this.drain().then(() => {
      for (const list of this.#registry.lists()) {
        for (const observer of list.living()) this.#release(observer, 'hub-closed');
      }
      this.#dispatcher.stop();
      return this.#cluster?.close();
    });
    return this.#closing;
  }

  // ---- registration and removal ----

  #register(list: ObserverList, callback: ObserverCallback, options: ObserveOptions | undefined, pull: boolean): Observer {
    const ext = options === undefined && !pull ? undefined : this.#makeExt(callback, options, pull);
    const probed = ext !== undefined && (ext.isAlive !== undefined || ext.owner !== undefined);
    const observer = new Observer(list, ++this.#nextObserver, probed ? ACTIVE | PROBED : ACTIVE, Date.now() - this.#startedAt, ext);
    if (options?.signal?.aborted === true) {
      observer.state = 0;
      const onClose = ext!.onClose;
      ext!.onClose = undefined;
      ext!.callback = undefined;
      if (onClose !== undefined) callContained(onClose, 'aborted' satisfies CloseReason);
      return observer;
    }
    this.#registry.add(observer, callback);
    this.#counters.observersAdded++;
    if (ext !== undefined) this.#lifecycle.attach(observer, ext);
    if (channels.observer.hasSubscribers) {
      channels.observer.publish({ hub: this, event: 'added', id: observer.id, key: list.name } satisfies ObserverMessage);
    }
    return observer;
  }

  #makeExt(callback: ObserverCallback, options: ObserveOptions | undefined, pull: boolean): ObserverExt {
    const ext = new ObserverExt(callback, options?.queue?.limit ?? this.#defaultLimit, options?.queue?.overflow ?? this.#defaultOverflow);
    if (options !== undefined) {
      ext.label = options.label;
      ext.onClose = options.onClose;
      ext.onGap = options.onGap;
      ext.isAlive = options.isAlive;
      ext.signal = options.signal;
      if (options.owner !== undefined) ext.owner = new WeakRef(options.owner);
    }
    ext.pull = pull;
    return ext;
  }

  #release(observer: Observer, reason: CloseReason): boolean {
    if (!isLiving(observer)) return false;
    observer.state = 0;
    this.#registry.remove(observer);
    this.#counters.observersRemoved++;
    const ext = observer.ext;
    if (ext !== undefined) {
      this.#dispatcher.forget(observer, ext);
      this.#lifecycle.detach(observer, ext);
    }
    if (channels.observer.hasSubscribers) {
      channels.observer.publish({ hub: this, event: 'removed', id: observer.id, key: observer.list.name, reason } satisfies ObserverMessage);
    }
    if (ext !== undefined) {
      const onClose = ext.onClose;
      ext.onClose = undefined;
      ext.callback = undefined;
      // A failing onClose must not stop the removal that called it, nor reach the caller.
      if (onClose !== undefined) callContained(onClose, reason);
    }
    return true;
  }

  /** Why an observer must go before its next delivery: its owner was collected, or `isAlive` said false. */
  #deadReason(observer: Observer): CloseReason | undefined {
    if (this.#lifecycle.isAlive(observer)) return undefined;
    return observer.ext?.owner !== undefined && observer.ext.owner.deref() === undefined ? 'owner-collected' : 'dead';
  }

  #report(error: unknown, context: ErrorContext): void {
    if (channels.error.hasSubscribers) channels.error.publish({ hub: this, error, context } satisfies ErrorMessage);
    // An onError that throws or rejects is contained: the notifier and the other observers never see it.
    callContained(this.#onError, error, context);
  }

  #makeBatchTarget(): BatchTarget {
    const cluster = this.#cluster;
    return {
      isClosed: () => this.#closed,
      clustered: cluster !== undefined,
      unchanged: (oldValue, newValue) => this.#unchangedContained(oldValue, newValue),
      assertEncodable: (key, oldValue, newValue, meta) => cluster?.assertEncodable(key, oldValue, newValue, meta),
      announceAll: (changes, localOnly) => {
        if (this.#closed) throw new ClosedError('cannot `commit`: the hub is closed');
        // Checked and encoded first, all of them: what follows cannot fail half-way.
        const accepted = changes.filter(({ oldValue, newValue }) => !this.#unchangedContained(oldValue, newValue));
        this.#counters.notificationsSkipped += changes.length - accepted.length;
        const at = Date.now();
        // Announced to the other nodes by an outbox in the transaction when `localOnly`: delivered here only.
        const wire = localOnly || cluster === undefined ? undefined : accepted.map((c) => cluster.encode(c.key, c.oldValue, c.newValue, c.meta, at));
        for (const [i, { key, oldValue, newValue, meta }] of accepted.entries()) {
          this.#accept(key, oldValue, newValue, meta, wire === undefined ? 0 : at);
          if (wire !== undefined) cluster!.publish(key, wire[i]!);
        }
        return accepted.length;
      },
    };
  }

  /**
   * `equals` for a batch whose data is already committed: one that throws
   * counts as changed, so a durable change is announced rather than lost.
   */
  #unchangedContained(oldValue: unknown, newValue: unknown): boolean {
    try {
      return this.#equals === undefined ? Object.is(oldValue, newValue) : this.#equals(oldValue, newValue);
    } catch {
      return false;
    }
  }

  /** `sub` as one of this hub's handles, or a refusal: an object that only inherits from one (no own `state`) is none. */
  #handleOf(sub: unknown): Observer {
    if (sub instanceof Observer && Object.hasOwn(sub, 'state') && sub.list.host === this.#host) return sub;
    throw InvalidArgumentError.expected('HERALD_INVALID_ARGUMENT', 'sub', 'a subscription of this hub', sub);
  }

  #activeObservers(): number {
    return this.#counters.observersAdded - this.#counters.observersRemoved;
  }

  #assertOpen(method: string): void {
    if (this.#closed) throw new ClosedError(`cannot \`${method}\`: the hub is closed`);
  }
}

/** Registered and still in its list: the list check also refuses an object that only looks like an observer (`Object.create(sub)`). */
function isLiving(observer: Observer): boolean {
  return (observer.state & ACTIVE) !== 0 && observer.list.holds(observer);
}

function defaultOnError(error: unknown, context: ErrorContext): void {
  console.error(`herald: observer ${context.observerId} of ${JSON.stringify(context.key)} failed:`, error);
}
