import type { ObserverManager } from '../hub/observer-manager.js';
import type { SessionStoreLike } from '../store/store.js';
import type { Auth } from './auth.js';
import type { HttpLimits } from './http-api.js';
import { HttpError } from './http-errors.js';
import type { WatchHistory } from './history.js';
import type { EndReason } from './watch.js';

/** The transports a watcher can use. */
export type TransportName = 'sse' | 'ws' | 'grpc';

/** Per transport, what `/metrics` reports. */
export interface TransportCounters {
  connections: number;
  subscriptions: number;
  eventsSent: number;
  eventsDropped: number;
}

/** Limits of watching connections (DESIGN 9.3). */
export interface WatchLimits {
  /** Watching connections (SSE streams, WebSockets and gRPC Watch streams together) at most; past it, 429 `HERALD_LIMIT` (gRPC: RESOURCE_EXHAUSTED). @default 10000 */
  readonly maxConnections: number;
  /** Subscriptions per WebSocket at most; past it, an error frame `HERALD_LIMIT`. @default 128 */
  readonly maxSubscriptions: number;
  /** Subscribes per second per WebSocket, in a bucket of `maxSubscriptions`. @default 100 */
  readonly subscribesPerSecond: number;
  /** A WebSocket frame from a client larger than this gets `HERALD_TOO_LARGE`; over 16 times it, the socket closes (1009). @default 65536 */
  readonly maxFrameBytes: number;
  /** Bytes waiting to be sent to one connection at most; past it, its watches end with `slow-consumer`. @default 1048576 (1 MiB) */
  readonly maxBufferedBytes: number;
  /** Changes one watch holds while it reads current values at most. @default 10000 */
  readonly maxHeldChanges: number;
  /** Variable names one watch may name at most; past it, `HERALD_LIMIT`. @default 256 */
  readonly maxNames: number;
}

/**
 * Where the server tells what happened: a subset of pino's logger (a pino
 * logger fits as it is). Watchers coming and going at `debug`, slow
 * consumers at `warn`, failures the server did not expect at `error`.
 */
export interface ServerLog {
  debug(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

/** A log that says nothing. */
export const SILENT: ServerLog = { debug: () => {}, warn: () => {}, error: () => {} };

/** Timers of watching connections. */
export interface WatchTimers {
  /** A comment line on each SSE stream this often. @default 15000 */
  readonly heartbeatMs: number;
  /** A ping on each WebSocket this often; a socket that has not answered one by the next is closed (a vanished client is gone within two). @default 25000 */
  readonly pingIntervalMs: number;
}

/** One watching connection, whatever its transport. */
export interface WatchConnection {
  readonly transport: TransportName;
  /** Ends its watches with `reason`, then the connection; resolves once it is closed. */
  shutdown(reason: EndReason): Promise<void>;
  /** Ends it at once, without telling the client. */
  destroy(): void;
}

/** What every connection of a server shares. */
export interface ServerContext {
  readonly hub: ObserverManager;
  readonly store: SessionStoreLike;
  readonly history: WatchHistory;
  readonly auth: Auth | undefined;
  readonly limits: WatchLimits & HttpLimits;
  readonly timers: WatchTimers;
  readonly connections: Connections;
  readonly log: ServerLog;
  /** How long a connection told to close may take its last frames before it is cut off. */
  readonly closeGraceMs: number;
}

/** The server's watching connections: admission, counts per transport, shutdown. */
export class Connections {
  readonly #all = new Set<WatchConnection>();
  /** Places taken by connections being set up (a WebSocket handshake under way). */
  #reserved = 0;
  readonly counters: Readonly<Record<TransportName, TransportCounters>> = {
    sse: { connections: 0, subscriptions: 0, eventsSent: 0, eventsDropped: 0 },
    ws: { connections: 0, subscriptions: 0, eventsSent: 0, eventsDropped: 0 },
    grpc: { connections: 0, subscriptions: 0, eventsSent: 0, eventsDropped: 0 },
  };

  constructor(readonly maxConnections: number) {}

  /** Refuses a new connection over the limit (429 `HERALD_LIMIT`). */
  assertRoom(): void {
    if (this.#all.size + this.#reserved >= this.maxConnections) {
      throw new HttpError(429, 'HERALD_LIMIT', `the server holds its limit of ${this.maxConnections} watching connections: try again later`);
    }
  }

  /** Takes a place for a connection being set up (or refuses, as `assertRoom`); the returned function gives it back. */
  reserve(): () => void {
    this.assertRoom();
    this.#reserved++;
    let given = false;
    return () => {
      if (!given) this.#reserved--;
      given = true;
    };
  }

  add(connection: WatchConnection): void {
    this.#all.add(connection);
    this.counters[connection.transport].connections++;
  }

  delete(connection: WatchConnection): void {
    if (this.#all.delete(connection)) this.counters[connection.transport].connections--;
  }

  /** Ends every connection with `reason`; those not closed within `graceMs` are destroyed. */
  async shutdown(reason: EndReason, graceMs: number): Promise<void> {
    const all = [...this.#all];
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, graceMs);
    });
    await Promise.race([Promise.all(all.map((connection) => connection.shutdown(reason))), late]);
    clearTimeout(timer);
    for (const connection of this.#all) connection.destroy();
  }
}

/**
 * Calls `fn` at `epochMs` (a token's expiry); returns what cancels it. Far
 * expiries wait in steps, as timers cannot span more than about 24 days.
 */
export function at(epochMs: number, fn: () => void): () => void {
  if (epochMs === Infinity) return () => {};
  let timer: NodeJS.Timeout;
  const arm = (): void => {
    const wait = epochMs - Date.now();
    if (wait <= 0) return fn();
    timer = setTimeout(arm, Math.min(wait, 2 ** 31 - 1));
    timer.unref();
  };
  arm();
  return () => clearTimeout(timer);
}
