import { HeraldError, InvalidArgumentError } from '../core/errors.js';
import { assertOptions, integerOption, isPlainObject, MAX_TIMER_MS, optionalFunction } from '../core/assert.js';
import { Deque } from '../core/deque.js';
import type { Meta } from '../core/types.js';
import type { BackplaneLink, BackplanePort, BackplaneSink, BackplaneState, BackplaneStats, GapReason } from '../core/backplane-port.js';
import { jsonCodec, type Codec, type WireChange } from './codec.js';

/** Backoff between reconnection attempts: `min(maxDelayMs, initialDelayMs * 2^attempt)`, with up to 20 % jitter. */
export interface ReconnectOptions {
  /** @default 50 */
  readonly initialDelayMs?: number;
  /** @default 5000 */
  readonly maxDelayMs?: number;
}

/** Options every backplane takes. */
export interface BackplaneOptions {
  /** How changes cross the wire. @default jsonCodec */
  readonly codec?: Codec;
  /** An encoded change longer than this fails `notify` with `HERALD_TOO_LARGE`. Each engine sets its own default from its limit. */
  readonly maxMessageBytes?: number;
  /** Changes kept while the engine is unreachable, sent when it comes back; the oldest are dropped beyond it (`publishDropped`). @default 10000 */
  readonly maxBuffered?: number;
  readonly reconnect?: ReconnectOptions;
  /** Connection and engine errors; they are also counted, and the latest is in `stats().lastError`. */
  readonly onError?: (error: unknown) => void;
  /**
   * How long `close()` waits for changes in flight to be handed over (while
   * the engine is connected) before it ends the connections anyway; a lost
   * connection ends the wait at once. @default 5000
   */
  readonly closeTimeoutMs?: number;
  /** Called each time the connection's state changes (`connecting`, `connected`, `reconnecting`, `closed`): for health checks and logs. */
  readonly onStateChange?: (state: BackplaneState) => void;
}

/** Origins remembered for ordering; the oldest is forgotten beyond this. */
const MAX_ORIGINS = 10_000;

/**
 * What every backplane shares: the codec and its size limit, interest
 * (an engine subscription per key or pattern with local observers),
 * echo suppression, per-origin ordering, a bounded buffer while the engine
 * is away, reconnection bookkeeping, gap signals and counters. An engine
 * adds connecting, subscribing and sending. A backplane serves one hub.
 */
export abstract class Backplane implements BackplanePort {
  /** The engine's name, as in stats and gap signals. */
  abstract readonly engine: string;
  /** This node's id on the wire, random per backplane: 96 bits, as 16 base64url characters (short, as it travels with every change). */
  readonly nodeId: string = Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(12))).toString('base64url');

  readonly #codec: Codec;
  readonly #maxBuffered: number;
  readonly #initialDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #onError: ((error: unknown) => void) | undefined;
  readonly #closeTimeoutMs: number;
  readonly #onStateChange: ((state: BackplaneState) => void) | undefined;
  /** An engine may lower it to what its server reports once connected. */
  protected maxMessageBytes: number;

  #sink: BackplaneSink | undefined;
  #state: BackplaneState = 'connecting';
  #everConnected = false;
  /** The last message number this node published. */
  #n = 0;
  /** Wanted engine subscriptions: topic id → [name, isPattern]. */
  readonly #wanted = new Map<string, readonly [string, boolean]>();
  /** Subscriptions and unsubscriptions run one at a time, in order. */
  #ops: Promise<void> = Promise.resolve();
  /** Sends and subscription changes not yet settled. */
  #inFlight = 0;
  #idleWaiters: (() => void)[] = [];
  /** Ends close()'s wait for what is in flight: called when it has settled, or when the connection is lost. */
  #endFlush: (() => void) | undefined;
  #closing: Promise<void> | undefined;
  readonly #buffer = new Deque<readonly [string, Uint8Array | string]>();
  /** Changes sent on a connection that was then lost, before their reply: sent again first when it is back. */
  #resend: (readonly [string, Uint8Array | string])[] = [];
  readonly #lastSeen = new Map<string, number>();
  #lastError: string | undefined;
  protected readonly counters = {
    reconnects: 0, published: 0, publishFailed: 0, publishDropped: 0, received: 0,
    echoes: 0, duplicates: 0, malformed: 0, gaps: 0,
  };

  constructor(options: BackplaneOptions | undefined, defaultMaxMessageBytes: number) {
    assertOptions(options, 'options');
    const codec = options?.codec ?? jsonCodec;
    if (typeof codec?.encode !== 'function' || typeof codec.decode !== 'function') {
      throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.codec', 'a codec with encode and decode', codec);
    }
    this.#codec = codec;
    this.maxMessageBytes = integerOption(options?.maxMessageBytes, 'options.maxMessageBytes', defaultMaxMessageBytes, 1);
    this.#maxBuffered = integerOption(options?.maxBuffered, 'options.maxBuffered', 10_000, 0);
    assertOptions(options?.reconnect, 'options.reconnect');
    this.#initialDelayMs = integerOption(options?.reconnect?.initialDelayMs, 'options.reconnect.initialDelayMs', 50, 1, MAX_TIMER_MS);
    this.#maxDelayMs = integerOption(options?.reconnect?.maxDelayMs, 'options.reconnect.maxDelayMs', 5000, 1, MAX_TIMER_MS);
    optionalFunction(options?.onError, 'options.onError');
    this.#onError = options?.onError;
    this.#closeTimeoutMs = integerOption(options?.closeTimeoutMs, 'options.closeTimeoutMs', 5000, 0, MAX_TIMER_MS);
    optionalFunction(options?.onStateChange, 'options.onStateChange');
    this.#onStateChange = options?.onStateChange;
  }

  // ---- what the hub calls ----

  /** Binds this backplane to its hub and starts connecting: the hub's constructor calls it. */
  attach(sink: BackplaneSink): BackplaneLink {
    if (this.#sink !== undefined) {
      throw new HeraldError('HERALD_INVALID_OPTION', '`options.backplane` already serves another hub; give each hub its own backplane');
    }
    if (this.#state === 'closed') throw new HeraldError('HERALD_INVALID_OPTION', '`options.backplane` is closed');
    this.#sink = sink;
    this.start();
    return {
      encode: (key, oldValue, newValue, meta, at) => this.encode(key, oldValue, newValue, meta, at),
      publish: (key, data) => this.#publish(key, data),
      assertEncodable: (key, oldValue, newValue, meta) => void this.#encode(key, oldValue, newValue, meta, Date.now()),
      interest: (name, pattern, wanted) => this.#interest(name, pattern, wanted),
      isSubscribed: (name, pattern = false) => this.hasSubscription(name, pattern),
    };
  }

  /**
   * Encodes a change for the wire and numbers it, or throws:
   * `HERALD_UNSERIALIZABLE` for a value the codec cannot carry,
   * `HERALD_TOO_LARGE` past `maxMessageBytes`.
   */
  protected encode(key: string, oldValue: unknown, newValue: unknown, meta: Meta, at: number): Uint8Array | string {
    const data = this.#encode(key, oldValue, newValue, meta, at);
    this.#n++;
    return data;
  }

  #encode(key: string, oldValue: unknown, newValue: unknown, meta: Meta, at: number): Uint8Array | string {
    const data = this.#codec.encode({ origin: this.nodeId, n: this.#n + 1, key, oldValue, newValue, meta, at });
    // UTF-8 takes at most 3 bytes per UTF-16 unit: most strings need no count.
    const bytes = typeof data === 'string' ? (data.length * 3 <= this.maxMessageBytes ? 0 : Buffer.byteLength(data)) : data.byteLength;
    if (bytes > this.maxMessageBytes) {
      throw new HeraldError('HERALD_TOO_LARGE', `the change of ${JSON.stringify(key)} encodes to ${bytes} bytes, over the ${this.engine} backplane's maxMessageBytes (${this.maxMessageBytes}); nothing was delivered`);
    }
    return data;
  }

  /** Sends an encoded change, or buffers it while the engine is away. Never throws. */
  #publish(key: string, data: Uint8Array | string): void {
    if (this.#state !== 'connected') {
      if (this.#state === 'closed') return;
      this.#hold(this.#buffer, key, data);
      return;
    }
    this.#send(key, data);
  }

  /** A key's or pattern's first local observer came (`wanted`), or its last one went. */
  #interest(name: string, pattern: boolean, wanted: boolean): void {
    const topic = (pattern ? 'p:' : 'k:') + name;
    if (wanted) this.#wanted.set(topic, [name, pattern]);
    else this.#wanted.delete(topic);
    if (this.#state === 'connected') this.#queueSync(topic);
  }

  /** Whether the engine has confirmed a subscription for this key or pattern. */
  isSubscribed(name: string, pattern = false): boolean {
    return this.hasSubscription(name, pattern);
  }

  /**
   * Resolves once the engine is connected and has confirmed every
   * subscription change asked for so far, and every change published so far
   * has been handed over. What tests and start-up code wait on.
   */
  ready(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  stats(): BackplaneStats {
    return {
      engine: this.engine,
      nodeId: this.nodeId,
      state: this.#state,
      connected: this.#state === 'connected',
      ...this.counters,
      buffered: this.#buffer.length + this.#resend.length,
      subscriptions: this.subscriptionCount(),
      lastError: this.#lastError,
    };
  }

  get state(): BackplaneState {
    return this.#state;
  }

  /**
   * Closes the engine connections after handing over what is in flight
   * (for at most `closeTimeoutMs`, and not at all once the connection is
   * lost); idempotent. The hub's `close()` calls it.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    if (this.#state === 'closed') return;
    if (this.#state === 'connected' && this.#inFlight > 0) await this.#flushed();
    this.#setState('closed');
    // Changes still waiting for the engine will never reach it: counted, not lost silently.
    this.counters.publishDropped += this.#buffer.length + this.#resend.length;
    this.#buffer.clear();
    this.#resend = [];
    try {
      await this.shutdown();
    } catch (error) {
      this.reportError(error);
    }
    this.#wakeIdle();
  }

  // ---- what an engine implements ----

  /** Starts connecting; the engine calls {@link connected} and {@link disconnected} as its connection comes and goes. */
  protected abstract start(): void;
  /** Subscribes on the engine; idempotent. */
  protected abstract subscribe(name: string, pattern: boolean): Promise<void> | void;
  /** Unsubscribes on the engine; idempotent. */
  protected abstract unsubscribe(name: string, pattern: boolean): Promise<void> | void;
  protected abstract hasSubscription(name: string, pattern: boolean): boolean;
  protected abstract subscriptionCount(): number;
  /**
   * The subscriptions this node holds on the engine, as the engine itself
   * reports them (Redis: `CLIENT LIST`; PostgreSQL: `pg_listening_channels()`;
   * NATS: the client's registered subscriptions, as the server's monitoring
   * port cannot be assumed). What a test of interest checks.
   */
  abstract engineSubscriptions(): Promise<number>;
  /** Sends one encoded change. */
  protected abstract send(key: string, data: Uint8Array | string): Promise<unknown> | void;
  /** Ends the engine connections. */
  protected abstract shutdown(): Promise<void>;

  /**
   * Whether a failed send was lost with its connection rather than refused
   * by the engine. Such a change is kept and sent again once the connection
   * is back (the engine reports the loss and reconnects);
   * receivers drop it if it had arrived after all (its message number is not
   * new). An engine whose receivers cannot tell keeps the default, false.
   */
  protected lostInTransit(_error: unknown): boolean {
    return false;
  }

  /**
   * After a reconnection, before the gap signal: an engine that can replay
   * what was missed does so and returns true, and then no `"reconnected"` gap
   * is signalled (it signals `"replay-incomplete"` itself if the replay fell short).
   */
  protected recover(): Promise<boolean> | boolean {
    return false;
  }

  // ---- what an engine calls ----

  /** The wanted subscriptions, as `[name, isPattern]`. */
  protected wantedTopics(): IterableIterator<readonly [string, boolean]> {
    return this.#wanted.values();
  }

  /** Whether the backplane has been closed. */
  protected get isClosed(): boolean {
    return this.#state === 'closed';
  }

  /** The delay before reconnection attempt `attempt` (0 for the first). */
  protected backoff(attempt: number): number {
    const base = Math.min(this.#maxDelayMs, this.#initialDelayMs * 2 ** Math.min(attempt, 30));
    return Math.round(base * (0.8 + Math.random() * 0.2));
  }

  /** The engine's connection is up: subscribes to what is wanted, sends what was buffered, and after a loss, recovers or signals a gap. */
  protected connected(): void {
    if (this.#state === 'closed' || this.#state === 'connected') return;
    const again = this.#everConnected;
    this.#everConnected = true;
    this.#setState('connected');
    if (again) this.counters.reconnects++;
    for (const topic of this.#wanted.keys()) this.#queueSync(topic);
    this.#track(this.#ops.then(async () => {
      const resend = this.#resend;
      this.#resend = [];
      for (const [key, data] of resend) this.#send(key, data);
      while (this.#buffer.length > 0 && this.#state === 'connected') {
        const [key, data] = this.#buffer.shift()!;
        this.#send(key, data);
      }
      if (!again) return;
      let complete = false;
      try {
        complete = await this.recover();
      } catch (error) {
        this.reportError(error);
      }
      if (!complete && this.#state !== 'closed') this.signalGap('reconnected');
    }));
  }

  /** The engine's connection is gone; it will be retried. */
  protected disconnected(error?: unknown): void {
    if (error !== undefined) this.reportError(error);
    if (this.#state === 'closed') return;
    this.#setState(this.#everConnected ? 'reconnecting' : 'connecting');
    // What was in flight will not be handed over on this connection: close() stops waiting for it.
    this.#endFlush?.();
  }

  /** Tells every observer of the hub that changes may have been missed. */
  protected signalGap(reason: GapReason): void {
    this.counters.gaps++;
    this.#sink?.gap(Object.freeze({ type: 'gap', reason, engine: this.engine, at: Date.now() }));
  }

  /** Decodes a message from the engine and hands it to the hub, unless it is malformed, this node's own, or already seen. */
  protected receive(data: Uint8Array | string, accept?: (change: WireChange) => boolean): void {
    if (this.#state === 'closed') return;
    let change: WireChange;
    try {
      change = this.#codec.decode(typeof data === 'string' ? Buffer.from(data) : data);
    } catch {
      this.counters.malformed++;
      return;
    }
    if (!isWireChange(change)) {
      this.counters.malformed++;
      return;
    }
    if (change.origin === this.nodeId) {
      this.counters.echoes++;
      return;
    }
    if (accept === undefined ? !this.#inOrder(change) : !accept(change)) {
      this.counters.duplicates++;
      return;
    }
    this.counters.received++;
    this.#sink?.deliver(change.key, change.oldValue, change.newValue, change.meta, change.at);
  }

  /** Counts an engine error, keeps its message, and hands it to `onError`. */
  protected reportError(error: unknown): void {
    this.#lastError = error instanceof Error ? error.message : String(error);
    try {
      this.#onError?.(error);
    } catch {
      // an onError that throws must not break the connection handling
    }
  }

  // ---- internals ----

  #setState(state: BackplaneState): void {
    if (this.#state === state) return;
    this.#state = state;
    try {
      this.#onStateChange?.(state);
    } catch (error) {
      this.reportError(error);
    }
  }

  /** Per origin, a message number not above the last one seen is a duplicate or late: dropped, so `seq` order holds. */
  #inOrder(change: WireChange): boolean {
    const last = this.#lastSeen.get(change.origin);
    if (last !== undefined && change.n <= last) return false;
    if (last === undefined && this.#lastSeen.size >= MAX_ORIGINS) this.#lastSeen.delete(this.#lastSeen.keys().next().value!);
    this.#lastSeen.set(change.origin, change.n);
    return true;
  }

  #send(key: string, data: Uint8Array | string): void {
    this.counters.published++;
    let sent: Promise<unknown> | void;
    try {
      sent = this.send(key, data);
    } catch (error) {
      this.#failed(error);
      return;
    }
    if (sent === undefined) return;
    // One handler pair per send, no promise of its own: sends are the hot path.
    this.#inFlight++;
    void sent.then(this.#settle, (error: unknown) => {
      this.#failed(error, key, data);
      this.#settle();
    });
  }

  #failed(error: unknown, key?: string, data?: Uint8Array | string): void {
    // Lost with its connection (which may not have noticed yet): sent again once it is back.
    if (key !== undefined && this.#state !== 'closed' && this.lostInTransit(error)) {
      this.counters.published--;
      this.#hold(this.#resend, key, data!);
      return;
    }
    this.counters.publishFailed++;
    this.reportError(error);
  }

  /** Keeps a change for later in `queue`, within `maxBuffered` changes in all; the oldest kept is dropped past it. */
  #hold(queue: Deque<readonly [string, Uint8Array | string]> | (readonly [string, Uint8Array | string])[], key: string, data: Uint8Array | string): void {
    if (this.#buffer.length + this.#resend.length >= this.#maxBuffered) {
      this.counters.publishDropped++;
      if (this.#maxBuffered === 0) return;
      if (this.#resend.length > 0) this.#resend.shift();
      else this.#buffer.shift();
    }
    queue.push([key, data]);
  }

  #queueSync(topic: string): void {
    this.#track(this.#ops = this.#ops.then(async () => {
      const wanted = this.#wanted.get(topic);
      const [name, pattern] = wanted ?? [topic.slice(2), topic.startsWith('p:')];
      try {
        if (wanted !== undefined) {
          if (!this.hasSubscription(name, pattern)) await this.subscribe(name, pattern);
        } else if (this.hasSubscription(name, pattern)) {
          await this.unsubscribe(name, pattern);
        }
      } catch (error) {
        this.reportError(error);
      }
    }));
  }

  #track(promise: Promise<unknown>): void {
    this.#inFlight++;
    void promise.finally(this.#settle);
  }

  /** Something in flight has settled. */
  readonly #settle = (): void => {
    this.#inFlight--;
    if (this.#inFlight === 0) this.#endFlush?.();
    if (this.#isIdle()) this.#wakeIdle();
  };

  #isIdle(): boolean {
    return this.#inFlight === 0 && (this.#state === 'connected' || this.#state === 'closed');
  }

  /** Resolves once nothing is in flight, the connection is lost, or `closeTimeoutMs` has passed. */
  #flushed(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.#endFlush!(), this.#closeTimeoutMs);
      this.#endFlush = () => {
        clearTimeout(timer);
        this.#endFlush = undefined;
        resolve();
      };
    });
  }

  #wakeIdle(): void {
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const wake of waiters) wake();
  }
}

function isWireChange(value: unknown): value is WireChange {
  if (typeof value !== 'object' || value === null) return false;
  const c = value as Partial<WireChange>;
  return typeof c.origin === 'string' && c.origin.length > 0
    && typeof c.n === 'number' && Number.isSafeInteger(c.n) && c.n > 0
    && typeof c.key === 'string' && c.key.length > 0
    && typeof c.at === 'number' && Number.isFinite(c.at)
    && isPlainObject(c.meta);
}

