import type { Meta } from './types.js';

/** Where a backplane's connection to its engine stands. */
export type BackplaneState = 'connecting' | 'connected' | 'reconnecting' | 'closed';

/** Why observers were told that changes may have been missed. */
export type GapReason =
  /** The connection to the engine was lost and is back; what was sent meanwhile did not arrive. */
  | 'reconnected'
  /** A replay after a reconnection could not cover everything (the outbox was pruned past it, or it was too long). */
  | 'replay-incomplete';

/**
 * The gap signal: changes of other nodes may have been missed, so an
 * observer that keeps state should re-read it. Observers receive it through
 * their `onGap` option, and `watch()` iterators as a marker (or an error).
 */
export interface Gap {
  readonly type: 'gap';
  readonly reason: GapReason;
  /** The engine of the backplane that lost track: `"redis"`, `"nats"`, `"postgres"`. */
  readonly engine: string;
  /** When the gap was detected, epoch milliseconds. */
  readonly at: number;
}

/** Whether `value` is a {@link Gap} marker (as yielded by `watch(key, { gaps: 'yield' })`). */
export function isGap(value: unknown): value is Gap {
  return typeof value === 'object' && value !== null && (value as { type?: unknown }).type === 'gap';
}

/** A backplane's counters and state, as `hub.getStats().backplane` shows them. */
export interface BackplaneStats {
  readonly engine: string;
  /** This node's id on the wire: changes carrying it are this node's own and are not delivered twice. */
  readonly nodeId: string;
  readonly state: BackplaneState;
  readonly connected: boolean;
  /** Connections regained after a loss. */
  readonly reconnects: number;
  /** Changes handed to the engine. */
  readonly published: number;
  /** Changes the engine refused or that failed in transit (also reported to `onError`). */
  readonly publishFailed: number;
  /** Changes dropped from the bounded buffer kept while disconnected (oldest first), and those still in it at `close()`. */
  readonly publishDropped: number;
  /** Changes waiting for the connection to come back. */
  readonly buffered: number;
  /** Changes of other nodes delivered to this hub. */
  readonly received: number;
  /** This node's own changes coming back from the engine, ignored (they were delivered locally already). */
  readonly echoes: number;
  /** Changes received twice (overlapping subscriptions, replays) or out of order, ignored. */
  readonly duplicates: number;
  /** Messages that were not herald changes (someone else publishing on herald's channels), ignored. */
  readonly malformed: number;
  /** Gap signals raised. */
  readonly gaps: number;
  /** Keys and patterns subscribed on the engine for this node's observers. */
  readonly subscriptions: number;
  readonly lastError: string | undefined;
}

/** Options of {@link BackplanePort.ready}. */
export interface ReadyOptions {
  /** @default 30000; Infinity waits for ever */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** What a hub hands its backplane when it attaches it: the way back in for remote changes and gap signals. */
export interface BackplaneSink {
  /** A change of another node, decoded: the hub delivers it to its local observers. */
  deliver(key: string, oldValue: unknown, newValue: unknown, meta: Meta, at: number): void;
  /** Changes of other nodes may have been missed: the hub tells observers that have an `onGap`. */
  gap(gap: Gap): void;
}

/** What a backplane hands back to the hub that attached it: the way out. */
export interface BackplaneLink {
  /**
   * Encodes a change for the wire, or throws a `HeraldError`
   * (`HERALD_UNSERIALIZABLE`, `HERALD_TOO_LARGE`) and sends nothing.
   */
  encode(key: string, oldValue: unknown, newValue: unknown, meta: Meta, at: number): Uint8Array | string;
  /** Sends an encoded change to the other nodes; never throws (failures are counted by the backplane). */
  publish(key: string, data: Uint8Array | string): void;
  /** Throws as {@link encode} would, and sends nothing: what a pending batch checks when a change is buffered. */
  assertEncodable(key: string, oldValue: unknown, newValue: unknown, meta: Meta): void;
  /** The hub's local interest in a key (or a pattern) began (`wanted`) or ended. */
  interest(name: string, pattern: boolean, wanted: boolean): void;
  /**
   * Throws `HERALD_INVALID_KEY` (`HERALD_INVALID_PATTERN`) for a key (pattern)
   * the engine could not carry, such as a NATS subject past the server's
   * limit: the hub asks before it registers an observer.
   */
  assertKey?(name: string, pattern: boolean): void;
  /** Whether the engine holds a subscription for this key (or pattern) now. */
  isSubscribed(name: string, pattern?: boolean): boolean;
}

/**
 * The narrow port through which a hub talks to a cluster: all the hub knows
 * of a backplane. `herald/redis`, `herald/nats` and `herald/postgres` implement
 * it; so may any engine of a user's. The hub calls `attach` once, from its
 * constructor, and `close` from its own `close()`.
 */
export interface BackplanePort {
  /** The engine's name, as in stats and gap signals. */
  readonly engine: string;
  readonly state: BackplaneState;
  stats(): BackplaneStats;
  /**
   * Resolves once the engine is connected and has confirmed every
   * subscription change asked for so far, and every change published so far
   * has been handed over. Rejects with `HERALD_TIMEOUT` after
   * `options.timeoutMs`, with `HERALD_CLOSED` once the backplane is closed,
   * and with the reason of `options.signal` when it aborts.
   */
  ready(options?: ReadyOptions): Promise<void>;
  /** Resolves once the connection is closed; never rejects. */
  close(): Promise<void>;
  /** Binds the backplane to one hub and starts it. Throws `HERALD_INVALID_OPTION` if it serves a hub already. */
  attach(sink: BackplaneSink): BackplaneLink;
}
