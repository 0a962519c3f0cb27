import type { Grant } from './auth.js';
import { at, type ServerContext, type TransportName, type WatchConnection } from './connections.js';
import { Watch, type EndReason, type WatchEvent, type WatchSink, type WatchSpec } from './watch.js';

/**
 * A connection that carries one watch (an SSE response, a gRPC Watch call):
 * its place in the server's count, its token's expiry, its send bound, and
 * the order of its ending. A transport says how it opens, sends, ends and is
 * cut off; it calls {@link gone} when its connection goes, however.
 */
export abstract class WatchStream implements WatchConnection, WatchSink {
  #watch: Watch | undefined;
  /** Counted as a subscription (from `started` to its end). */
  #open = false;
  #ended = false;
  #cancelExpiry: () => void = () => {};
  #resolveClosed!: () => void;
  readonly #closed = new Promise<void>((resolve) => (this.#resolveClosed = resolve));

  /** `transport` is a parameter, not a subclass field: the count needs it before a subclass's fields exist. */
  constructor(readonly transport: TransportName, readonly context: ServerContext) {
    context.connections.add(this);
  }

  /** Whether the watch is over (ended, refused, or its connection gone). */
  protected get ended(): boolean {
    return this.#ended;
  }

  /** Starts the watch; it ends with the token's expiry. Rejects as `Watch.start` does. */
  async start(spec: WatchSpec, grant: Grant): Promise<void> {
    this.#cancelExpiry = at(grant.expiresAt, () => void this.shutdown('token-expired'));
    const watch = await Watch.start(this.context, spec, this, `${this.transport} ${spec.session}`);
    if (this.#ended) watch.end('unsubscribed');
    else this.#watch = watch;
  }

  /** The watch was refused before it started: the transport answers with the error instead. */
  refused(): void {
    this.#ended = true;
    this.#cancelExpiry();
    this.context.connections.delete(this);
  }

  started(): void {
    this.#open = true;
    this.context.connections.counters[this.transport].subscriptions++;
    this.opened();
  }

  event(event: WatchEvent, scope: string): void {
    if (this.#ended) return;
    const counters = this.context.connections.counters[this.transport];
    const buffered = this.buffered();
    if (buffered > this.context.limits.maxBufferedBytes) {
      counters.eventsDropped++;
      this.context.log.warn({ transport: this.transport, buffered }, 'slow consumer: its stream ends');
      return void this.shutdown('slow-consumer');
    }
    counters.eventsSent++;
    this.send(event, scope);
  }

  end(reason: EndReason): void {
    this.#uncount();
    if (this.#ended) return;
    this.#ended = true;
    this.#cancelExpiry();
    this.finish(reason);
  }

  async shutdown(reason: EndReason): Promise<void> {
    if (this.#watch !== undefined) this.#watch.end(reason);
    else this.end(reason);
    return this.#closed;
  }

  abstract destroy(): void;

  /** The connection is gone, however: the stream leaves the server's count, and its watch its observers. */
  protected gone(): void {
    this.context.connections.delete(this);
    this.#cancelExpiry();
    this.#ended = true;
    this.#watch?.end('unsubscribed');
    this.#uncount();
    this.#resolveClosed();
  }

  /** A client that does not read never takes its last frames: it is cut off after the grace. */
  protected cutOffLater(): void {
    setTimeout(() => this.destroy(), this.context.closeGraceMs).unref();
  }

  /** The watch is live: the transport's first bytes (headers, a comment) go out. */
  protected abstract opened(): void;
  /** Bytes waiting to go to the client. */
  protected abstract buffered(): number;
  /** One event, its cursor `${scope}.${event.position}`. */
  protected abstract send(event: WatchEvent, scope: string): void;
  /** The last frame and the end of the connection, with `reason`. */
  protected abstract finish(reason: EndReason): void;

  #uncount(): void {
    if (!this.#open) return;
    this.#open = false;
    this.context.connections.counters[this.transport].subscriptions--;
  }
}
