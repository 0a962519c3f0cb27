import type { BackplanePort, BackplaneState, BackplaneStats, Gap } from './backplane-port.js';

/** What the notifier attached to a change; stores add `sessionId`, `txId`, ... Always frozen. */
export type Meta = Readonly<Record<string, unknown>>;

/**
 * What observers receive: one accepted change of one key. Frozen.
 * `seq` is the hub's revision: one counter for the whole hub, so a key's
 * changes carry ever larger numbers and none is reused while the hub lives.
 */
export interface Change<T = unknown> {
  readonly key: string;
  readonly oldValue: T;
  readonly newValue: T;
  readonly meta: Meta;
  readonly seq: number;
  /** Epoch milliseconds at which `notify` accepted the change. */
  readonly at: number;
}

/** What an observer callback may return: nothing, or a promise the hub waits for before the next delivery. */
export type ObserverCallback<T = unknown> = (change: Change<T>) => unknown;

/** What a full observer queue does with one more change. */
export type OverflowPolicy = 'drop-oldest' | 'drop-newest' | 'coalesce' | 'disconnect';

/** Why an observer went. */
export type CloseReason =
  | 'unsubscribed'
  | 'aborted'
  | 'owner-collected'
  | 'dead'
  | 'slow-consumer'
  | 'hub-closed'
  | 'session-ended';

/** The bound of one observer's queue of pending changes (the one in flight is not counted). */
export interface QueueOptions {
  /** Pending changes kept at most: an integer ≥ 0, or `Infinity`. @default 1000 */
  readonly limit?: number;
  /** @default 'drop-oldest' */
  readonly overflow?: OverflowPolicy;
}

/** Options of {@link ObserverManager.observe} and {@link ObserverManager.observePattern}. */
export interface ObserveOptions {
  /** Abort removes the observer at once; an already aborted signal registers nothing. */
  readonly signal?: AbortSignal;
  /**
   * Held weakly: once it is garbage-collected the observer is removed. The
   * callback must not capture it, or it can never be collected.
   */
  readonly owner?: object;
  /** Checked by each sweep and before each delivery; `false` removes the observer (reason `"dead"`). */
  readonly isAlive?: () => boolean;
  /** A name shown by `inspect()`. */
  readonly label?: string;
  /** This observer's queue bound. @default the hub's `queue` option */
  readonly queue?: QueueOptions;
  /** Called exactly once when the observer goes, with why. What it throws or rejects with is contained. */
  readonly onClose?: (reason: CloseReason) => unknown;
  /**
   * Called when the hub's backplane may have missed changes of other nodes
   * (a lost connection, a slow consumer): re-read the state you keep. Called
   * after the changes queued for this observer before the gap.
   */
  readonly onGap?: (gap: Gap) => unknown;
}

/** Options of {@link ObserverManager.watch}. */
export interface WatchOptions {
  /** Abort ends the iteration (`done`) and removes its observer. */
  readonly signal?: AbortSignal;
  /** @default the hub's `queue` option */
  readonly queue?: QueueOptions;
  readonly label?: string;
  /**
   * What the iterator does when the backplane may have missed changes:
   * `'throw'` rejects `next()` with a `HeraldError` coded `HERALD_GAP` and ends
   * the iteration (re-read and watch again); `'yield'` yields a {@link Gap}
   * marker (tell it apart with `isGap`) and goes on.
   * @default 'throw'
   */
  readonly gaps?: 'throw' | 'yield';
}

/** The handle returned by `observe`. */
export interface Subscription extends Disposable {
  /** Unique within the hub; `hub.remove(id)` accepts it. */
  readonly id: string;
  /** The key, or for `observePattern` the pattern. */
  readonly key: string;
  /** `false` once the observer is gone, for any reason; never `true` again. */
  readonly active: boolean;
  /** Removes the observer: `true` the first time, `false` once it is gone for any reason. */
  unsubscribe(): boolean;
}

/** Where an observer failure happened; passed to `onError`. */
export interface ErrorContext {
  readonly key: string;
  readonly observerId: string;
  readonly change: Change;
}

/** Options of {@link ObserverManager}. */
export interface HubOptions {
  /** Change detection: `true` means unchanged, and the change is skipped. @default Object.is */
  readonly equals?: (oldValue: unknown, newValue: unknown) => boolean;
  /** Period of the cleanup sweep; 0 turns it off. The timer is unref'd. @default 30000 */
  readonly sweepIntervalMs?: number;
  /** Receives every observer failure (throw, rejection, timeout). An `onError` that throws or rejects is contained. @default logs to `console.error` */
  readonly onError?: (error: unknown, context: ErrorContext) => unknown;
  /** The default queue bound of every observer. @default { limit: 1000, overflow: 'drop-oldest' } */
  readonly queue?: QueueOptions;
  /** How long an observer's returned promise may hold its next delivery. @default 30000 */
  readonly callbackTimeoutMs?: number;
  /**
   * Makes this hub one node of a cluster: changes notified on any node reach
   * the observers of every node (`herald/redis`, `herald/nats`, `herald/postgres`).
   * The hub owns it from then on: `hub.close()` closes it.
   */
  readonly backplane?: BackplanePort;
}

/** Dispatch latency (notify accepted → its fan-out began), from a sample of recent changes. */
export interface LatencyStats {
  readonly samples: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** What {@link ObserverManager.getStats} returns. Counters never go down while the hub lives. */
export interface Stats {
  readonly observersAdded: number;
  readonly observersRemoved: number;
  readonly activeObservers: number;
  readonly keys: number;
  /** Accepted changes. */
  readonly notifications: number;
  /** `notify` calls skipped because `equals` said unchanged. */
  readonly notificationsSkipped: number;
  /** Sum over accepted changes of the observers in their snapshot. */
  readonly fanOut: number;
  /** Callback invocations, whether the callback then returned, threw or timed out. */
  readonly deliveries: number;
  readonly deliveryErrors: number;
  readonly deliveryTimeouts: number;
  readonly dropped: number;
  readonly coalesced: number;
  /** Deliveries that never happened because their observer was removed first. */
  readonly cancelled: number;
  /** Deliveries not yet settled into one of the four outcomes (0 after `drain()`). */
  readonly pending: number;
  readonly cleanupRuns: number;
  readonly deadObserversRemoved: number;
  /** Changes waiting in observer queues now. */
  readonly queued: number;
  readonly uptimeMs: number;
  readonly latency: LatencyStats;
  /** Gap signals handed to observers (`onGap` and `watch()` markers). */
  readonly gapSignals: number;
  /** The backplane's state and counters; absent on a hub of one process. */
  readonly backplane?: BackplaneStats;
}

/** One observer as {@link ObserverManager.inspect} shows it. */
export interface ObserverInfo {
  readonly id: string;
  readonly label: string | undefined;
  readonly pattern: string | undefined;
  readonly ageMs: number;
  readonly alive: boolean;
  readonly queued: number;
  readonly delivered: number;
  readonly errors: number;
  readonly dropped: number;
  /** Gap signals this observer received. */
  readonly gaps: number;
}

/** What {@link ObserverManager.inspect} returns. */
export interface Inspection {
  readonly key: string;
  readonly observerCount: number;
  readonly observers: readonly ObserverInfo[];
  /** On a clustered hub: the backplane's state, and whether the engine holds a subscription for this key itself. */
  readonly backplane?: { readonly state: BackplaneState; readonly subscribed: boolean };
}
