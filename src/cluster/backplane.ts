import { ClosedError, describeValue, HeraldError, InvalidArgumentError, TimeoutError } from '../core/errors.js';
import { assertOptions, integerOption, isPlainObject, MAX_TIMER_MS, optionalDuration, optionalFunction } from '../core/assert.js';
import type { Meta } from '../core/types.js';
import type { BackplaneLink, BackplanePort, BackplaneSink, BackplaneState, BackplaneStats, GapReason, ReadyOptions } from '../core/backplane-port.js';
import { jsonCodec, type Codec, type WireChange } from './codec.js';
import { Interest, topicId, type Topic } from './interest.js';
import { Outgoing } from './outgoing.js';

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

/** Changes held while a reconnection is recovered, at most. */
const MAX_HELD_WHILE_RECOVERING = 10_000;

/** Origins remembered for ordering; the oldest is forgotten beyond this. */
const MAX_ORIGINS = 10_000;

/** How long `ready()` waits by default. */
const READY_TIMEOUT_MS = 30_000;

/**
 * What every backplane shares, each part with one owner: the codec and its
 * size limit; {@link Outgoing}, the one FIFO of this node's changes (nothing
 * overtakes what is queued, and what a lost connection took is sent again
 * first); {@link Interest}, the one reconciler of engine subscriptions
 * against local observers; and the inbound path (echo suppression, per-origin
 * order, gap signals). An engine adds connecting, subscription commands and
 * sending. A backplane serves one hub.
 */
export abstract class Backplane implements BackplanePort {
  /** The engine's name, as in stats and gap signals. */
  abstract readonly engine: string;
  /** This node's id on the wire, random per backplane: 96 bits, as 16 base64url characters (short, as it travels with every change). */
  readonly nodeId: string = Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(12))).toString('base64url');

  readonly #codec: Codec;
  /** Every message starts with its codec's name and a newline: a node of another codec is told apart, not taken for noise. */
  readonly #header: string;
  readonly #headerBytes: Buffer;
  /** Codec names of other nodes already reported, so each is reported once. */
  readonly #foreignCodecs = new Set<string>();
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
  /** Whether the receiving side was lost since the last connection: then changes may have been missed. */
  #missed = false;
  /** The last message number this node published. */
  #n = 0;
  readonly #outgoing: Outgoing;
  readonly #interest: Interest;
  /** A replay or gap check after a reconnection, in progress. */
  #recovering = false;
  /**
   * Changes received from the loss of the receiving side until the
   * reconnection is recovered (Redis, NATS: a gap is coming): they go to the
   * hub after the gap signal, so observers hear of the gap before any change
   * that came after the loss.
   */
  #heldWhileRecovering: WireChange[] | undefined;
  #idleWaiters: (() => void)[] = [];
  /** Woken when interest has nothing left to do, or the connection goes. */
  #subscribedWaiters: (() => void)[] = [];
  /** Ends close()'s wait for what is in flight when the connection is lost. */
  #onLost: (() => void) | undefined;
  #closing: Promise<void> | undefined;
  readonly #lastSeen = new Map<string, number>();
  #lastError: string | undefined;
  protected readonly counters = { reconnects: 0, received: 0, echoes: 0, duplicates: 0, malformed: 0, gaps: 0 };

  constructor(options: BackplaneOptions | undefined, defaultMaxMessageBytes: number) {
    assertOptions(options, 'options');
    const codec = options?.codec ?? jsonCodec;
    if (typeof codec?.encode !== 'function' || typeof codec.decode !== 'function' || typeof codec.name !== 'string' || codec.name.length === 0) {
      throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.codec', 'a codec with a name, encode and decode', codec);
    }
    if (!/^[\x21-\x7e]{1,32}$/.test(codec.name)) {
      throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.codec.name', 'from 1 to 32 printable ASCII characters, no spaces', codec.name);
    }
    this.#codec = codec;
    this.#header = `${codec.name}\n`;
    this.#headerBytes = Buffer.from(this.#header, 'latin1');
    this.maxMessageBytes = integerOption(options?.maxMessageBytes, 'options.maxMessageBytes', defaultMaxMessageBytes, 1);
    const maxBuffered = integerOption(options?.maxBuffered, 'options.maxBuffered', 10_000, 0);
    assertOptions(options?.reconnect, 'options.reconnect');
    this.#initialDelayMs = integerOption(options?.reconnect?.initialDelayMs, 'options.reconnect.initialDelayMs', 50, 1, MAX_TIMER_MS);
    this.#maxDelayMs = integerOption(options?.reconnect?.maxDelayMs, 'options.reconnect.maxDelayMs', 5000, 1, MAX_TIMER_MS);
    optionalFunction(options?.onError, 'options.onError');
    this.#onError = options?.onError;
    this.#closeTimeoutMs = integerOption(options?.closeTimeoutMs, 'options.closeTimeoutMs', 5000, 0, MAX_TIMER_MS);
    optionalFunction(options?.onStateChange, 'options.onStateChange');
    this.#onStateChange = options?.onStateChange;
    this.#outgoing = new Outgoing({
      send: (key, data) => this.send(key, data),
      lostInTransit: (error) => this.lostInTransit(error),
      failed: (error) => this.reportError(error),
      retryDelay: (attempt) => this.backoff(attempt),
    }, maxBuffered, () => this.#wakeIfIdle());
    this.#interest = new Interest({
      subscribe: (topics) => this.subscribeTopics(topics),
      unsubscribe: (topics) => this.unsubscribeTopics(topics),
      failed: (error) => this.reportError(error),
      retryDelay: (attempt) => this.backoff(attempt),
    }, () => {
      this.#wakeSubscribed();
      this.#wakeIfIdle();
    });
  }

  // ---- what the hub calls ----

  /** Binds this backplane to its hub and starts connecting: the hub's constructor calls it. */
  attach(sink: BackplaneSink): BackplaneLink {
    if (this.#sink !== undefined) {
      throw new HeraldError('HERALD_INVALID_OPTION', '`options.backplane` already serves another hub; give each hub its own backplane');
    }
    if (this.#state === 'closed') throw new HeraldError('HERALD_INVALID_OPTION', '`options.backplane` is closed');
    this.#sink = sink;
    this.#emitState();
    this.start();
    return {
      encode: (key, oldValue, newValue, meta, at) => this.encode(key, oldValue, newValue, meta, at),
      publish: (key, data) => this.#outgoing.publish(key, data),
      assertEncodable: (key, oldValue, newValue, meta) => void this.#encode(key, oldValue, newValue, meta, Date.now()),
      interest: (name, pattern, wanted) => this.#interest.want(name, pattern, wanted),
      assertKey: (name, pattern) => this.#assertKey(name, pattern),
      isSubscribed: (name, pattern = false) => this.#interest.holds(topicId(name, pattern)),
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
    this.#assertKey(key, false);
    const encoded = this.#codec.encode({ origin: this.nodeId, n: this.#n + 1, key, oldValue, newValue, meta, at });
    const data = typeof encoded === 'string' ? this.#header + encoded : Buffer.concat([this.#headerBytes, encoded]);
    // UTF-8 takes at most 3 bytes per UTF-16 unit: most strings need no count.
    const bytes = typeof data === 'string' ? (data.length * 3 <= this.maxMessageBytes ? 0 : Buffer.byteLength(data)) : data.byteLength;
    if (bytes > this.maxMessageBytes) {
      throw new HeraldError('HERALD_TOO_LARGE', `the change of ${JSON.stringify(key)} encodes to ${bytes} bytes, over the ${this.engine} backplane's maxMessageBytes (${this.maxMessageBytes}); nothing was delivered`);
    }
    return data;
  }

  /** Throws `HERALD_INVALID_KEY` (or `HERALD_INVALID_PATTERN`) for a key the engine could not carry. */
  #assertKey(name: string, pattern: boolean): void {
    const problem = this.keyProblem(name, pattern);
    if (problem === undefined) return;
    const what = pattern ? 'pattern' : 'key';
    throw new InvalidArgumentError(
      pattern ? 'HERALD_INVALID_PATTERN' : 'HERALD_INVALID_KEY',
      `\`${what}\` ${describeValue(name)} cannot travel on the ${this.engine} backplane: ${problem}; nothing was changed`,
    );
  }

  /** Whether the engine has confirmed a subscription for this key or pattern. */
  isSubscribed(name: string, pattern = false): boolean {
    return this.#interest.holds(topicId(name, pattern));
  }

  /**
   * Resolves once the engine is connected, has confirmed every subscription
   * change asked for so far, and has every change published so far (and any
   * replay after a reconnection is done). Rejects with `HERALD_TIMEOUT` after
   * `timeoutMs` (default 30 000), with `HERALD_CLOSED` if the backplane is
   * closed first, and with the signal's reason if `signal` aborts.
   */
  ready(options?: ReadyOptions): Promise<void> {
    try {
      assertOptions(options, 'options');
      optionalDuration(options?.timeoutMs, 'options.timeoutMs', 0, true);
      if (options?.signal !== undefined && !(options.signal instanceof AbortSignal)) {
        throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.signal', 'an AbortSignal', options.signal);
      }
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    const signal = options?.signal;
    if (this.#state === 'closed') return Promise.reject(new ClosedError('the backplane is closed: it will not be ready'));
    if (this.#isIdle()) return Promise.resolve();
    if (signal?.aborted === true) return Promise.reject(signal.reason as Error);
    const timeoutMs = options?.timeoutMs ?? READY_TIMEOUT_MS;
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (error?: Error): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.#idleWaiters = this.#idleWaiters.filter((waiter) => waiter !== wake);
        if (error === undefined) resolve();
        else reject(error);
      };
      const wake = (): void => done(this.#state === 'closed' ? new ClosedError('the backplane was closed before it was ready') : undefined);
      const onAbort = (): void => done(signal!.reason as Error);
      this.#idleWaiters.push(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (timeoutMs !== Infinity) {
        timer = setTimeout(() => done(new TimeoutError(
          `the ${this.engine} backplane was not ready within ${timeoutMs} ms (state ${this.#state}, ${this.#outgoing.buffered} changes waiting${this.#lastError === undefined ? '' : `, last error: ${this.#lastError}`})`,
        )), timeoutMs);
      }
    });
  }

  stats(): BackplaneStats {
    return {
      engine: this.engine,
      nodeId: this.nodeId,
      state: this.#state,
      connected: this.#state === 'connected',
      ...this.counters,
      ...this.#outgoing.counters,
      buffered: this.#outgoing.buffered,
      subscriptions: this.#interest.heldCount,
      lastError: this.#lastError,
    };
  }

  get state(): BackplaneState {
    return this.#state;
  }

  /**
   * Closes the engine connections after handing over what is in flight
   * (for at most `closeTimeoutMs`, and not at all once the connection is
   * lost); idempotent. Subscriptions are not taken back one by one: they end
   * with the connection. The hub's `close()` calls it.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#interest.pause();
    // One budget for the whole close: handing over what is in flight, then ending the connections.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#closeTimeoutMs)));
    if (this.#state === 'connected' && this.#outgoing.sending) {
      const lost = new Promise<void>((resolve) => (this.#onLost = resolve));
      await Promise.race([this.#outgoing.settled(), lost, timeout]);
      this.#onLost = undefined;
    }
    this.#setState('closed');
    this.#wakeSubscribed();
    // Changes still waiting for the engine will never reach it: counted, not lost silently.
    this.#outgoing.stop();
    this.#wakeIdle();
    // An engine that never answers does not hold close() for ever either.
    try {
      await Promise.race([this.shutdown(), timeout]);
    } catch (error) {
      this.reportError(error);
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- what an engine implements ----

  /** Starts connecting; the engine calls {@link connected} and {@link disconnected} as its connection comes and goes. */
  protected abstract start(): void;
  /** Subscribes every topic on the engine, in as few commands as it can; resolves once the engine has confirmed them. */
  protected abstract subscribeTopics(topics: readonly Topic[]): Promise<void>;
  /** Unsubscribes every topic on the engine, in as few commands as it can. */
  protected abstract unsubscribeTopics(topics: readonly Topic[]): Promise<void>;
  /** Why the engine could not carry this key or pattern (a limit of its own), or undefined when it can. */
  protected keyProblem(_name: string, _pattern: boolean): string | undefined {
    return undefined;
  }

  /**
   * The topics the engine holds for this node right after a (re)connection:
   * none for an engine whose subscriptions end with their connection (the
   * default), the client's own list for one that resubscribes by itself.
   */
  protected heldAfterConnect(): Iterable<string> {
    return [];
  }

  /**
   * The subscriptions this node holds on the engine, as the engine server
   * itself reports them (Redis: `CLIENT LIST`; PostgreSQL:
   * `pg_listening_channels()`; NATS: the server's monitoring endpoint).
   * What a test of interest checks.
   */
  abstract engineSubscriptions(): Promise<number>;
  /** Sends one encoded change; a promise, if any, settles once the engine has it. */
  protected abstract send(key: string, data: Uint8Array | string): Promise<unknown> | void;
  /** Ends the engine connections. */
  protected abstract shutdown(): Promise<void>;

  /**
   * Whether a failed send was lost with its connection rather than refused
   * by the engine. Such a change is kept and sent again, before any later
   * one; receivers drop it if it had arrived after all (its message number
   * is not new). An engine whose receivers cannot tell keeps the default, false.
   */
  protected lostInTransit(_error: unknown): boolean {
    return false;
  }

  /**
   * After a reconnection that lost the receiving side, before the gap
   * signal: an engine that can replay what was missed does so and returns
   * true, and then no `"reconnected"` gap is signalled (it signals
   * `"replay-incomplete"` itself if the replay fell short).
   */
  protected recover(): Promise<boolean> | boolean {
    return false;
  }

  // ---- what an engine calls ----

  /** The wanted keys and patterns. */
  protected wantedTopics(): IterableIterator<Topic> {
    return this.#interest.wanted();
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

  /**
   * The engine's connections are up: interest is reconciled with what the
   * engine holds, what waits is sent in order, and after a loss of the
   * receiving side, the engine recovers or a gap is signalled.
   */
  protected connected(): void {
    if (this.#state === 'closed' || this.#state === 'connected') return;
    const again = this.#everConnected;
    this.#everConnected = true;
    this.#setState('connected');
    if (again) this.counters.reconnects++;
    this.#interest.open(this.heldAfterConnect());
    this.#outgoing.open();
    if (!again || !this.#missed) return this.#releaseHeld();
    this.#missed = false;
    this.#recovering = true;
    void this.#recover().finally(() => {
      this.#recovering = false;
      // Lost again meanwhile: what came in stays held for the next connection's gap signal.
      if (!this.#missed) this.#releaseHeld();
      this.#wakeIfIdle();
    });
  }

  async #recover(): Promise<void> {
    let complete = false;
    try {
      // Once subscribed again: a change published from then on arrives, so the gap is what came before.
      if (!this.#interest.idle) await new Promise<void>((resolve) => this.#subscribedWaiters.push(resolve));
      if (this.#state !== 'connected') {
        // Lost again meanwhile: the next connection recovers.
        this.#missed = true;
        return;
      }
      complete = await this.recover();
    } catch (error) {
      this.reportError(error);
    }
    if (!complete && this.#state !== 'closed') this.signalGap('reconnected');
  }

  /** What came in while recovering, after the gap signal (if any), in the order it came. */
  #releaseHeld(): void {
    const held = this.#heldWhileRecovering;
    this.#heldWhileRecovering = undefined;
    if (held === undefined || this.#state === 'closed') return;
    for (const change of held) {
      this.counters.received++;
      this.#sink?.deliver(change.key, change.oldValue, change.newValue, change.meta, change.at);
    }
  }

  /**
   * A connection is gone; it will be retried. `receiving` is false when only
   * the sending side went (nothing sent to this node was missed, so no gap).
   */
  protected disconnected(error?: unknown, receiving = true): void {
    if (error !== undefined) this.reportError(error);
    if (this.#state === 'closed') return;
    if (receiving) {
      this.#missed = true;
      // From the loss on, what comes in waits for the gap signal (a client may resubscribe before this node hears it is back).
      this.#heldWhileRecovering ??= [];
    }
    this.#setState(this.#everConnected ? 'reconnecting' : 'connecting');
    this.#interest.pause();
    this.#outgoing.pause();
    this.#wakeSubscribed();
    // What was in flight will not be handed over on this connection: close() stops waiting for it.
    this.#onLost?.();
  }

  /** Tells every observer of the hub that changes may have been missed. */
  protected signalGap(reason: GapReason): void {
    this.counters.gaps++;
    this.#sink?.gap(Object.freeze({ type: 'gap', reason, engine: this.engine, at: Date.now() }));
  }

  /**
   * Decodes a message from the engine and hands it to the hub, unless it is
   * malformed, this node's own, or already seen (per
   * origin, by message number; `accept` replaces that check for an engine
   * that orders otherwise).
   */
  protected receive(data: Uint8Array | string, accept?: (change: WireChange) => boolean): void {
    if (this.#state === 'closed') return;
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    const header = this.#headerBytes;
    if (!startsWith(bytes, header)) {
      this.#foreign(bytes);
      return;
    }
    let change: WireChange;
    try {
      change = this.#codec.decodeFrom === undefined ? this.#codec.decode(bytes.subarray(header.length)) : this.#codec.decodeFrom(bytes, header.length);
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
    // An engine that orders by itself (accept) replays while recovering: what it receives is the recovery.
    const held = accept === undefined ? this.#heldWhileRecovering : undefined;
    if (held !== undefined) {
      // Past the bound a change is dropped: it came before the gap signal, which covers it.
      if (held.length < MAX_HELD_WHILE_RECOVERING) held.push(change);
      return;
    }
    this.counters.received++;
    this.#sink?.deliver(change.key, change.oldValue, change.newValue, change.meta, change.at);
  }

  /** A message without this node's codec header: another codec's (reported once per name) or noise; counted as malformed either way. */
  #foreign(bytes: Uint8Array): void {
    this.counters.malformed++;
    const end = bytes.subarray(0, 34).indexOf(10);
    if (end <= 0) return;
    const codec = Buffer.from(bytes.buffer, bytes.byteOffset, end).toString('latin1');
    if (this.#foreignCodecs.has(codec) || this.#foreignCodecs.size >= 16) return;
    this.#foreignCodecs.add(codec);
    this.reportError(new HeraldError('HERALD_BACKPLANE', `a change in codec ${JSON.stringify(codec)} arrived, and this node reads ${JSON.stringify(this.#codec.name)}: give every node the same codec (such changes are counted as malformed)`));
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
    this.#emitState();
  }

  #emitState(): void {
    try {
      this.#onStateChange?.(this.#state);
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

  #isIdle(): boolean {
    return this.#state === 'connected' && this.#outgoing.idle && this.#interest.idle && !this.#recovering;
  }

  #wakeIfIdle(): void {
    if (this.#isIdle() || this.#state === 'closed') this.#wakeIdle();
  }

  #wakeSubscribed(): void {
    const waiters = this.#subscribedWaiters;
    this.#subscribedWaiters = [];
    for (const wake of waiters) wake();
  }

  #wakeIdle(): void {
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const wake of waiters) wake();
  }
}

/** Whether `bytes` begins with `prefix`, compared in place. */
function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
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
