import { connect, type NatsConnection, type NodeConnectionOptions, type Subscription } from '@nats-io/transport-node';
import { InvalidArgumentError } from '../core/errors.js';
import { Backplane, type BackplaneOptions } from './backplane.js';

/** Options of {@link NatsBackplane}. */
export interface NatsBackplaneOptions extends BackplaneOptions {
  /** @default 'nats://127.0.0.1:4222' */
  readonly servers?: string | readonly string[];
  /** Passed to the NATS client's `connect`; herald sets reconnection, echo and the name itself. */
  readonly nats?: NodeConnectionOptions;
  /** The first subject token of every change, so that several clusters can share one server. @default 'herald' */
  readonly prefix?: string;
}

/** Keys whose subjects are remembered; past it the memory starts again. */
const SUBJECT_CACHE = 10_000;

/** The NATS server's default `max_payload`; the server's own figure replaces it once connected. */
const NATS_DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/**
 * A backplane on NATS core pub/sub (through `@nats-io/transport-node`): a key
 * is a subject (`herald.` + its `/`-separated segments as tokens, escaped),
 * a pattern's `*` is NATS's `*` and its trailing `**` is `>`. One connection,
 * with echo off; the client resubscribes by itself after a reconnection, and
 * herald signals a gap, since core NATS keeps nothing for a node that is away.
 * A node too slow to read what the server sends it is a slow consumer to the
 * server, which drops its connection: that too ends in a reconnection and a
 * gap signal. (The client's own slow-consumer reports exist only for iterator
 * subscriptions, which drop nothing; herald subscribes with callbacks, and
 * hands each change straight to the hub's bounded observer queues.)
 *
 * @example
 * ```ts
 * import { ObserverManager } from 'herald';
 * import { NatsBackplane } from 'herald/nats';
 * const hub = new ObserverManager({ backplane: new NatsBackplane({ servers: 'nats://127.0.0.1:4222' }) });
 * ```
 */
export class NatsBackplane extends Backplane {
  readonly engine = 'nats';
  readonly #servers: string | string[];
  readonly #natsOptions: NodeConnectionOptions;
  readonly #prefix: string;
  #connection: NatsConnection | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #attempt = 0;
  #up = false;
  /** Wakes a close() that is waiting for a flush when the connection goes. */
  #onDown: (() => void) | undefined;
  /** Subjects of keys sent to lately: escaping a key on every send would cost more than the send. */
  readonly #subjects = new Map<string, string>();
  /** Topic ('k:' or 'p:' + name) → its subscription. */
  readonly #subscriptions = new Map<string, Subscription>();

  constructor(options: NatsBackplaneOptions = {}) {
    super(options, NATS_DEFAULT_MAX_PAYLOAD);
    const servers = options.servers ?? 'nats://127.0.0.1:4222';
    if (typeof servers !== 'string' && !(Array.isArray(servers) && servers.every((s) => typeof s === 'string'))) {
      throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.servers', 'a server URL or an array of them', servers);
    }
    const prefix = options.prefix ?? 'herald';
    if (typeof prefix !== 'string' || !/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(prefix)) {
      throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.prefix', 'subject tokens of letters, digits, _ and -, separated by dots', prefix);
    }
    this.#servers = typeof servers === 'string' ? servers : [...servers];
    this.#natsOptions = options.nats ?? {};
    this.#prefix = prefix;
  }

  /** The subject a key's changes travel on. */
  subjectOf(key: string): string {
    return `${this.#prefix}.${key.split('/').map(escapeToken).join('.')}`;
  }

  /** The client's name on the server (its monitoring pages show it). */
  get connectionName(): string {
    return `herald-${this.nodeId}`;
  }

  protected start(): void {
    // The first connection is retried here, so that close() can stop it; later ones by the client itself.
    connect({
      ...this.#natsOptions,
      servers: this.#servers,
      name: this.connectionName,
      noEcho: true,
      reconnect: true,
      maxReconnectAttempts: -1,
      reconnectDelayHandler: () => this.backoff(this.#attempt++),
    }).then((connection) => {
      if (this.isClosed) {
        void connection.close();
        return;
      }
      this.#connection = connection;
      const maxPayload = connection.info?.max_payload;
      if (maxPayload !== undefined && maxPayload < this.maxMessageBytes) this.maxMessageBytes = maxPayload;
      void this.#watchStatus(connection);
      this.#attempt = 0;
      this.#up = true;
      this.connected();
    }, (error: unknown) => {
      this.disconnected(error);
      if (this.isClosed) return;
      this.#retryTimer = setTimeout(() => this.start(), this.backoff(this.#attempt++));
    });
  }

  async #watchStatus(connection: NatsConnection): Promise<void> {
    for await (const status of connection.status()) {
      switch (status.type) {
        case 'disconnect':
          this.#up = false;
          this.#onDown?.();
          this.disconnected();
          break;
        case 'reconnect':
          this.#attempt = 0;
          this.#up = true;
          // The client has sent its subscriptions again; the round trip makes sure the server has them before observers hear of the gap.
          connection.flush().then(() => {
            if (this.#up) this.connected();
          }, (error: unknown) => this.reportError(error));
          break;
        case 'error':
          this.reportError(status.error);
          break;
        default:
          break;
      }
    }
  }

  protected async subscribe(name: string, pattern: boolean): Promise<void> {
    const subject = pattern ? this.#patternSubject(name) : this.subjectOf(name);
    const subscription = this.#connection!.subscribe(subject, {
      callback: (error, message) => {
        if (error !== null) this.reportError(error);
        else this.receive(message.data);
      },
    });
    this.#subscriptions.set((pattern ? 'p:' : 'k:') + name, subscription);
    // A round trip: once the server answers, it has the subscription, and changes published after it arrive.
    await this.#connection!.flush();
  }

  protected unsubscribe(name: string, pattern: boolean): void {
    const topic = (pattern ? 'p:' : 'k:') + name;
    this.#subscriptions.get(topic)?.unsubscribe();
    this.#subscriptions.delete(topic);
  }

  protected hasSubscription(name: string, pattern: boolean): boolean {
    return this.#subscriptions.has((pattern ? 'p:' : 'k:') + name);
  }

  protected subscriptionCount(): number {
    return this.#subscriptions.size;
  }

  engineSubscriptions(): Promise<number> {
    // The client's table of what it has subscribed on the server; core NATS answers no such question itself.
    const protocol = (this.#connection as unknown as { protocol?: { subscriptions?: { size(): number } } } | undefined)?.protocol;
    return Promise.resolve(protocol?.subscriptions?.size() ?? 0);
  }

  protected send(key: string, data: Uint8Array | string): void {
    let subject = this.#subjects.get(key);
    if (subject === undefined) {
      if (this.#subjects.size >= SUBJECT_CACHE) this.#subjects.clear();
      subject = this.subjectOf(key);
      this.#subjects.set(key, subject);
    }
    this.#connection!.publish(subject, data);
  }

  protected async shutdown(): Promise<void> {
    clearTimeout(this.#retryTimer);
    const connection = this.#connection;
    if (connection === undefined || connection.isClosed()) return;
    // A live connection hands over what was published first (a round trip), unless it goes meanwhile.
    if (this.#up) {
      const down = new Promise<void>((resolve) => (this.#onDown = resolve));
      await Promise.race([connection.flush(), down]).catch(() => {});
    }
    await connection.close();
  }

  #patternSubject(pattern: string): string {
    const tokens = pattern.split('/').map((segment) => (segment === '*' ? '*' : segment === '**' ? '>' : escapeToken(segment)));
    return `${this.#prefix}.${tokens.join('.')}`;
  }
}

/**
 * A key segment as a subject token: letters, digits, `_` and `-` stay, every
 * other character is percent-encoded (so `.`, `*`, `>` and spaces never reach
 * the subject), and an empty segment becomes a lone `%`, which no encoding produces.
 */
function escapeToken(segment: string): string {
  if (segment.length === 0) return '%';
  return encodeURIComponent(segment).replace(/[.*!'()~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
