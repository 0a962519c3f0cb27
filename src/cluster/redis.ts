import { Redis, ReplyError, type RedisOptions } from 'ioredis';
import { InvalidArgumentError } from '../core/errors.js';
import { Backplane, type BackplaneOptions } from './backplane.js';
import type { Topic } from './interest.js';

/** Options of {@link RedisBackplane}. */
export interface RedisBackplaneOptions extends BackplaneOptions {
  /** @default 'redis://127.0.0.1:6379' */
  readonly url?: string;
  /** Passed to both ioredis connections; herald sets reconnection, offline queue and resubscription itself. */
  readonly redis?: RedisOptions;
  /** Prepended to every channel, so that several clusters can share one server. @default 'herald:' */
  readonly prefix?: string;
}

/** Redis's own limit on a bulk string (`proto-max-bulk-len`'s default). */
const REDIS_MAX_BULK = 512 * 1024 * 1024;

/** Channels per SUBSCRIBE command: 10 000 keys take ten commands, pipelined. */
const CHANNELS_PER_COMMAND = 1000;

/**
 * A backplane on Redis pub/sub (through ioredis): a connection of its own
 * for subscriptions (a key is a channel, a pattern a PSUBSCRIBE glob), one
 * for publishing. Redis pub/sub keeps nothing for a node that is away, so a
 * lost connection ends in a gap signal once the node has resubscribed.
 *
 * @example
 * ```ts
 * import { ObserverManager } from 'herald';
 * import { RedisBackplane } from 'herald/redis';
 * const hub = new ObserverManager({ backplane: new RedisBackplane({ url: 'redis://127.0.0.1:6379' }) });
 * ```
 */
export class RedisBackplane extends Backplane {
  readonly engine = 'redis';
  readonly #url: string;
  readonly #redisOptions: RedisOptions;
  readonly #prefix: string;
  #subscriber: Redis | undefined;
  #publisher: Redis | undefined;
  /** Fail the subscription commands in flight when the subscriber connection closes (ioredis drops them unsettled). */
  readonly #onSubscriberClose: (() => void)[] = [];
  /** Topic ids the subscriber connection holds now: they end with it, and outlive a reconnection of the publisher only. */
  readonly #subscribed = new Set<string>();
  #subscriberReady = false;
  #publisherReady = false;

  constructor(options: RedisBackplaneOptions = {}) {
    super(options, REDIS_MAX_BULK);
    const url = options.url ?? 'redis://127.0.0.1:6379';
    if (typeof url !== 'string' || !/^rediss?:\/\//.test(url)) {
      throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.url', 'a redis:// or rediss:// URL', url);
    }
    const prefix = options.prefix ?? 'herald:';
    if (typeof prefix !== 'string' || /[*?[\]\\]/.test(prefix)) {
      throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.prefix', 'a string without glob characters', prefix);
    }
    this.#url = url;
    this.#redisOptions = options.redis ?? {};
    this.#prefix = prefix;
  }

  /** The name the subscriber connection gives itself (`CLIENT LIST` shows it). */
  get subscriberName(): string {
    return `herald-sub-${this.nodeId}`;
  }

  /** The channel a key's changes travel on. */
  channelOf(key: string): string {
    return this.#prefix + key;
  }

  protected start(): void {
    // herald reads replies in ioredis's default ('legacy') shape.
    // eslint-disable-next-line @typescript-eslint/no-unused-vars -- taken out, not used
    const { replyMapping, ...given } = this.#redisOptions;
    const common: Omit<RedisOptions, 'replyMapping'> = {
      ...given,
      lazyConnect: false,
      enableOfflineQueue: false,
      autoResubscribe: false,
      maxRetriesPerRequest: null,
      retryStrategy: (times) => (this.isClosed ? null : this.backoff(times - 1)),
    };
    // Subscriptions are the reconciler's to send again, once, after a reconnection: ioredis must not resend them too.
    const subscriber = new Redis(this.#url, { ...common, autoResendUnfulfilledCommands: false, connectionName: this.subscriberName });
    const publisher = new Redis(this.#url, { ...common, enableAutoPipelining: true, connectionName: `herald-pub-${this.nodeId}` });
    this.#subscriber = subscriber;
    this.#publisher = publisher;
    subscriber.on('messageBuffer', (_channel: Buffer, message: Buffer) => this.receive(message));
    subscriber.on('pmessageBuffer', (_pattern: Buffer, _channel: Buffer, message: Buffer) => this.receive(message));
    subscriber.on('ready', () => {
      this.#subscriberReady = true;
      this.#update();
    });
    subscriber.on('close', () => {
      this.#subscriberReady = false;
      for (const fail of this.#onSubscriberClose.splice(0)) fail();
      this.#subscribed.clear(); // the server forgets a connection's subscriptions with it
      this.disconnected(undefined, true);
    });
    publisher.on('ready', () => {
      this.#publisherReady = true;
      this.#update();
    });
    publisher.on('close', () => {
      this.#publisherReady = false;
      // Only the sending side went: nothing sent to this node was missed.
      this.disconnected(undefined, false);
    });
    subscriber.on('error', (error: unknown) => this.reportError(error));
    publisher.on('error', (error: unknown) => this.reportError(error));
  }

  #update(): void {
    if (this.#subscriberReady && this.#publisherReady) this.connected();
  }

  protected override heldAfterConnect(): Iterable<string> {
    return this.#subscribed;
  }

  protected async subscribeTopics(topics: readonly Topic[]): Promise<void> {
    await this.#command(topics, (subscriber, channels) => subscriber.subscribe(...channels), (subscriber, globs) => subscriber.psubscribe(...globs));
    for (const topic of topics) this.#subscribed.add(topic.id);
  }

  protected async unsubscribeTopics(topics: readonly Topic[]): Promise<void> {
    for (const topic of topics) this.#subscribed.delete(topic.id);
    await this.#command(topics, (subscriber, channels) => subscriber.unsubscribe(...channels), (subscriber, globs) => subscriber.punsubscribe(...globs));
  }

  /** One command per 1 000 channels (and per 1 000 patterns), all sent at once. */
  async #command(topics: readonly Topic[], keys: (subscriber: Redis, channels: string[]) => Promise<unknown>, patterns: (subscriber: Redis, globs: string[]) => Promise<unknown>): Promise<void> {
    const subscriber = this.#subscriber!;
    const channels = topics.filter((t) => !t.pattern).map((t) => this.#prefix + t.name);
    const globs = topics.filter((t) => t.pattern).map((t) => this.#globOf(t.name));
    const commands: Promise<unknown>[] = [];
    for (let i = 0; i < channels.length; i += CHANNELS_PER_COMMAND) commands.push(keys(subscriber, channels.slice(i, i + CHANNELS_PER_COMMAND)));
    for (let i = 0; i < globs.length; i += CHANNELS_PER_COMMAND) commands.push(patterns(subscriber, globs.slice(i, i + CHANNELS_PER_COMMAND)));
    const all = Promise.all(commands);
    all.catch(() => {});
    let fail!: () => void;
    const closed = new Promise<never>((_, reject) => (fail = () => reject(new Error('the subscriber connection closed with subscription commands in flight'))));
    this.#onSubscriberClose.push(fail);
    try {
      await Promise.race([all, closed]);
    } finally {
      const at = this.#onSubscriberClose.indexOf(fail);
      if (at !== -1) this.#onSubscriberClose.splice(at, 1);
    }
  }

  async engineSubscriptions(): Promise<number> {
    const list = (await this.#publisher!.client('LIST')) as string;
    const line = list.split('\n').find((l) => l.includes(` name=${this.subscriberName} `));
    if (line === undefined) return 0;
    const count = (field: string): number => Number(new RegExp(` ${field}=(\\d+)`).exec(line)?.[1] ?? 0);
    return count('sub') + count('psub');
  }

  protected send(key: string, data: Uint8Array | string): Promise<unknown> {
    return this.#publisher!.publish(this.#prefix + key, data as Buffer | string);
  }

  /** A reply from Redis is a refusal; anything else (the connection closed, the stream not writable) lost the change on the way. */
  protected override lostInTransit(error: unknown): boolean {
    return !(error instanceof (ReplyError as new () => Error));
  }

  protected shutdown(): Promise<void> {
    this.#subscriber?.disconnect();
    this.#publisher?.disconnect();
    return Promise.resolve();
  }

  /**
   * A herald pattern as a Redis glob: `*` and `**` become `*` (which Redis
   * lets cross `/`, so a node may receive a little more than it observes; the
   * hub delivers only what matches), and the rest is escaped.
   */
  #globOf(pattern: string): string {
    const segments = pattern.split('/').map((segment) => (segment === '*' || segment === '**' ? '*' : segment.replace(/[*?[\]\\]/g, '\\$&')));
    return this.#prefix + segments.join('/');
  }
}
