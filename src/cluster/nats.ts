import { connect, type NatsConnection, type NodeConnectionOptions, type Subscription } from '@nats-io/transport-node';
import { InvalidArgumentError } from '../core/errors.js';
import { isWellFormed } from '../core/json.js';
import { Backplane, type BackplaneOptions } from './backplane.js';
import type { Topic } from './interest.js';

/** Options of {@link NatsBackplane}. */
export interface NatsBackplaneOptions extends BackplaneOptions {
  /** @default 'nats://127.0.0.1:4222' */
  readonly servers?: string | readonly string[];
  /** Passed to the NATS client's `connect`; herald sets reconnection, echo and the name itself. */
  readonly nats?: NodeConnectionOptions;
  /** The first subject token of every change, so that several clusters can share one server. @default 'herald' */
  readonly prefix?: string;
  /**
   * The server's monitoring endpoint (`nats-server -m 8222` serves it at
   * `http://host:8222`): `engineSubscriptions()` then asks the server itself
   * what this node has subscribed. Without it, the client's own table answers.
   */
  readonly monitorUrl?: string;
}

/** Keys whose subjects are remembered; past it the memory starts again. */
const SUBJECT_CACHE = 10_000;

/**
 * The longest subject herald sends: the server drops a connection whose
 * protocol line passes `max_control_line` (4 096 bytes by default), and a
 * PUB or SUB line adds its verb, a size or id and spaces to the subject.
 */
const MAX_SUBJECT_BYTES = 4000;

/** Changes are confirmed by one round trip per this many milliseconds at most (what it covers is sent again if it fails). */
const CONFIRM_EVERY_MS = 5;

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
  readonly #monitorUrl: string | undefined;
  #connection: NatsConnection | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #attempt = 0;
  #up = false;
  /** Wakes a close() that is waiting for a flush when the connection goes. */
  #onDown: (() => void) | undefined;
  /** Subjects of keys sent to lately: escaping a key on every send would cost more than the send. */
  readonly #subjects = new Map<string, string>();
  /** The round trip that confirms this turn's changes, until it is sent. */
  #confirm: Promise<void> | undefined;
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
    const monitorUrl = options.monitorUrl;
    if (monitorUrl !== undefined && (typeof monitorUrl !== 'string' || !/^https?:\/\//.test(monitorUrl))) {
      throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.monitorUrl', 'an http:// or https:// URL', monitorUrl);
    }
    this.#monitorUrl = monitorUrl;
    this.#servers = typeof servers === 'string' ? servers : [...servers];
    this.#natsOptions = options.nats ?? {};
    this.#prefix = prefix;
  }

  /** A subject past the server's protocol line limit would end the connection, for every observer of this node. */
  protected override keyProblem(name: string, pattern: boolean): string | undefined {
    if (!pattern && this.#subjects.has(name)) return undefined;
    if (!isWellFormed(name)) return 'it holds a lone surrogate, which a NATS subject cannot carry';
    const subject = pattern ? this.#patternSubject(name) : this.subjectOf(name);
    const bytes = Buffer.byteLength(subject);
    if (bytes > MAX_SUBJECT_BYTES) return `its NATS subject takes ${bytes} bytes, over the ${MAX_SUBJECT_BYTES} the server's protocol line allows`;
    if (!pattern) this.#remember(name, subject);
    return undefined;
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

  /** The client sends its subscriptions again by itself after a reconnection: they are held, wanted or not. */
  protected override heldAfterConnect(): Iterable<string> {
    return this.#subscriptions.keys();
  }

  protected async subscribeTopics(topics: readonly Topic[]): Promise<void> {
    const connection = this.#connection!;
    for (const topic of topics) {
      if (this.#subscriptions.has(topic.id)) continue;
      const subject = topic.pattern ? this.#patternSubject(topic.name) : this.subjectOf(topic.name);
      this.#subscriptions.set(topic.id, connection.subscribe(subject, {
        callback: (error, message) => {
          if (error !== null) this.reportError(error);
          else this.receive(message.data);
        },
      }));
    }
    // One round trip for them all: once the server answers, it has every subscription, and changes published after it arrive.
    await connection.flush();
  }

  protected async unsubscribeTopics(topics: readonly Topic[]): Promise<void> {
    for (const topic of topics) {
      this.#subscriptions.get(topic.id)?.unsubscribe();
      this.#subscriptions.delete(topic.id);
    }
    await this.#connection!.flush();
  }

  async engineSubscriptions(): Promise<number> {
    const connection = this.#connection;
    if (connection === undefined || connection.isClosed()) return 0;
    if (this.#monitorUrl === undefined) {
      // The client's table of what it has subscribed on the server.
      const protocol = (connection as unknown as { protocol?: { subscriptions?: { size(): number } } }).protocol;
      return protocol?.subscriptions?.size() ?? 0;
    }
    // The server's own view: this connection, found by its id, with its subscriptions.
    const cid = connection.info?.client_id;
    const response = await fetch(`${this.#monitorUrl.replace(/\/$/, '')}/connz?cid=${cid}&subs=1`);
    if (!response.ok) throw new Error(`the NATS monitoring endpoint answered ${response.status}`);
    const body = (await response.json()) as { connections?: { subscriptions_list?: string[] }[] };
    return body.connections?.[0]?.subscriptions_list?.length ?? 0;
  }

  /**
   * Publishes, and settles once a round trip after it has come back (one
   * PING per 5 ms at most, shared by every change sent meanwhile):
   * the server then has the change. A change the client still held when the
   * socket went (its buffer is thrown away on reconnection) fails that round
   * trip, and is sent again; receivers drop a copy they had by its number.
   */
  protected send(key: string, data: Uint8Array | string): Promise<void> {
    let subject = this.#subjects.get(key);
    if (subject === undefined) this.#remember(key, (subject = this.subjectOf(key)));
    const connection = this.#connection!;
    connection.publish(subject, data);
    this.#confirm ??= this.#confirmWindow(connection);
    return this.#confirm;
  }

  /**
   * The round trip that confirms a window of publishes. The server gives
   * each connection its own client id: if it differs by the time the answer
   * comes, the client reconnected meanwhile (throwing away what it still held),
   * so the answer says nothing of this window, which is sent again.
   */
  #confirmWindow(connection: NatsConnection): Promise<void> {
    const client = connection.info?.client_id;
    return new Promise<void>((resolve, reject) => {
      setTimeout(() => {
        this.#confirm = undefined;
        const lost = (): Error => new Error('the NATS connection was replaced before these changes were confirmed');
        if (client === undefined || connection.info?.client_id !== client) {
          reject(lost());
          return;
        }
        connection.flush().then(() => (connection.info?.client_id === client ? resolve() : reject(lost())), reject);
      }, CONFIRM_EVERY_MS);
    });
  }

  /** A publish the server refuses throws at once; a round trip that fails lost its changes with the connection. */
  protected override lostInTransit(): boolean {
    return true;
  }

  #remember(key: string, subject: string): void {
    if (this.#subjects.size >= SUBJECT_CACHE) this.#subjects.clear();
    this.#subjects.set(key, subject);
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
