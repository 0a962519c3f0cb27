import pg from 'pg';
import { Backplane, type BackplaneOptions } from '../cluster/backplane.js';
import type { Topic } from '../cluster/interest.js';
import type { WireChange } from '../cluster/codec.js';
import { assertOptions, integerOption, MAX_TIMER_MS } from '../core/assert.js';
import { Deque } from '../core/deque.js';
import type { BatchedChange, PendingNotifications } from '../delivery/pending.js';
import type { ObserverManager } from '../hub/observer-manager.js';
import { Outbox, type OutboxRow } from './outbox.js';
import { clientBeside, resolvePool, type PoolSource } from './pool.js';
import { PostgresSchema } from './schema.js';

/** Options of {@link PostgresBackplane}: a `pool` of yours, or a `connectionString` for one the backplane owns. */
export type PostgresBackplaneOptions = BackplaneOptions & {
  /** Where the outbox table lives; created on first use. @default 'herald' */
  readonly schema?: string;
  /** Outbox rows older than this are pruned. @default 3600000 (an hour) */
  readonly outboxMaxAgeMs?: number;
  /** At most this many newest outbox rows are kept. @default 100000 */
  readonly outboxMaxRows?: number;
  /** How often this node prunes the outbox; 0 turns it off. The timer is unref'd. @default 60000 */
  readonly pruneIntervalMs?: number;
  /** Rows replayed at most after one reconnection; past it the rest is skipped and signalled as a gap. @default 100000 */
  readonly maxReplayRows?: number;
} & PoolSource;

/** A bytea column takes up to 1 GB; the outbox row is what carries the change, NOTIFY only its id. */
const BYTEA_MAX = 1024 * 1024 * 1024 - 1;
/** Changes remembered as delivered, for skipping one that is sent twice (after a lost reply). */
const SEEN_CHANGES = 100_000;
/** Rows read per query. */
const PAGE = 1000;
/** Skipped ids looked for at most; past it the node gives up on the oldest and signals a gap. */
const MAX_HOLES = 10_000;
/** A skipped id is given up as rolled back only this long after it was seen missing, and once every transaction that could fill it has ended. */
const HOLE_MIN_AGE_MS = 1000;
/** A skipped id still fillable after this long (a transaction held open somewhere in the cluster) is given up, with a gap signal. */
const HOLE_MAX_AGE_MS = 60_000;
/** SQLSTATEs that mean the connection, not the statement, failed: the change may be lost in transit, and is sent again. */
const CONNECTION_LOST = /^(08|57P0)/;
/** LISTEN statements per query. */
const LISTENS_PER_QUERY = 1000;

/** One batch of outbox rows, sent in one INSERT, settled together. */
interface SendBatch {
  readonly rows: OutboxRow[];
  readonly done: Promise<void>;
  settle(error?: Error): void;
}

/**
 * A backplane on PostgreSQL LISTEN/NOTIFY with an outbox table. Each change
 * is a row of `<schema>.outbox`; NOTIFY only wakes the nodes that listen on
 * its key's channel (a key on a channel of its own, a pattern on the channel
 * of its literal prefix), so `pg_listening_channels()` shows just what a
 * node observes. Each node reads the outbox through one ordered path: a
 * cursor, the last id it has read, and rows fetched after it in id order.
 * An id skipped because its transaction had not committed yet (commit order
 * is not id order) is looked for again until it appears, or until every
 * transaction that could fill it has ended (then it was rolled back). A reconnection reads on from the cursor: nothing is lost or
 * delivered twice unless the outbox was pruned past it.
 *
 * Changes of a {@link PostgresSessionStore} or of `withTransaction` on a hub
 * with this backplane are written to the outbox inside their own
 * transaction: the announcement commits or rolls back with the data.
 *
 * @example
 * ```ts
 * import { ObserverManager } from 'herald';
 * import { PostgresBackplane } from 'herald/postgres';
 * const hub = new ObserverManager({ backplane: new PostgresBackplane({ connectionString: process.env.DATABASE_URL! }) });
 * ```
 */
export class PostgresBackplane extends Backplane {
  readonly engine = 'postgres';
  readonly #pool: pg.Pool;
  readonly #ownsPool: boolean;
  readonly #tables: PostgresSchema;
  readonly #outbox: Outbox;
  readonly #maxAgeMs: number;
  readonly #maxRows: number;
  readonly #pruneIntervalMs: number;
  readonly #maxReplayRows: number;
  #listener: pg.Client | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #pruneTimer: NodeJS.Timeout | undefined;
  #readTimer: NodeJS.Timeout | undefined;
  #attempt = 0;
  #readAttempt = 0;
  /** Channel → the topics listening on it now; patterns with one literal prefix share a channel. */
  readonly #channels = new Map<string, Set<string>>();
  /** The last outbox id read: everything up to it was delivered, skipped as a hole, or was before this node began. */
  #cursor: bigint | undefined;
  /**
   * Ids below the cursor not seen yet: their transaction may still commit.
   * Each with the snapshot's xmax when it was seen missing and when: once
   * the oldest running transaction is past that xmax (and a moment has
   * passed), whatever could have filled it has ended, and it was rolled back.
   */
  readonly #holes = new Map<bigint, { readonly xmax: bigint; readonly at: number }>();
  /** The topics the listener holds now: what a read fetches payloads for. */
  readonly #listening = new Map<string, Topic>();
  /** After a reconnection, until recover() has read what was missed: other reads wait for it. */
  #replaying = false;
  /** Whether a listener connection was ever up: only then is there anything to replay. */
  #connectedOnce = false;
  /** The listener's queries, one at a time. */
  #listenerTurn: Promise<unknown> = Promise.resolve();
  /** A read is running; `#readAgain` asks for one more after it. */
  #reading: Promise<void> | undefined;
  #readAgain = false;
  /** Changes delivered lately, as origin and message number: one sent twice (after a lost reply) is skipped. */
  readonly #seen = new Set<string>();
  readonly #seenOrder = new Deque<string>();
  /** The batch being filled while the one before is sent: one node's changes commit in the order they were notified. */
  #next: SendBatch | undefined;
  #sending = false;

  constructor(options: PostgresBackplaneOptions) {
    super(options, BYTEA_MAX);
    assertOptions(options, 'options');
    const { schema, pool, owned } = resolvePool(options, (error) => this.reportError(error), 4);
    this.#pool = pool;
    this.#ownsPool = owned;
    this.#tables = new PostgresSchema(schema);
    this.#outbox = new Outbox(this.#tables, this.nodeId);
    this.#maxAgeMs = integerOption(options.outboxMaxAgeMs, 'options.outboxMaxAgeMs', 3_600_000, 1);
    this.#maxRows = integerOption(options.outboxMaxRows, 'options.outboxMaxRows', 100_000, 1);
    this.#pruneIntervalMs = integerOption(options.pruneIntervalMs, 'options.pruneIntervalMs', 60_000, 0, MAX_TIMER_MS);
    this.#maxReplayRows = integerOption(options.maxReplayRows, 'options.maxReplayRows', 100_000, 1);
  }

  /** The `application_name` of the listener connection (`pg_stat_activity` shows it). */
  get listenerName(): string {
    return `herald-listen-${this.nodeId}`.slice(0, 63);
  }

  /** The NOTIFY channel of a key's changes. */
  channelOf(key: string): string {
    return this.#outbox.keyChannel(key);
  }

  /**
   * Writes changes to the outbox with `client`, inside the caller's open
   * transaction: their NOTIFY goes out at its COMMIT, and a rollback takes
   * them back. Encodes first, so a change the wire cannot carry throws here,
   * before COMMIT. @internal
   */
  async stage(client: pg.ClientBase, changes: readonly BatchedChange[]): Promise<void> {
    if (changes.length === 0) return;
    await this.#tables.ensureOutbox(this.#pool);
    const at = Date.now();
    await this.#outbox.insert(client, changes.map((c) => [c.key, this.encode(c.key, c.oldValue, c.newValue, c.meta, at)] as const));
  }

  /** PostgreSQL text cannot hold NUL: a key with one could never be written to the outbox. */
  protected override keyProblem(name: string): string | undefined {
    return name.includes('\0') ? 'PostgreSQL text cannot hold the NUL character' : undefined;
  }

  // ---- the engine ----

  protected start(): void {
    void this.#connect();
    if (this.#pruneIntervalMs > 0) {
      this.#pruneTimer = setInterval(() => void this.prune().catch((error: unknown) => this.reportError(error)), this.#pruneIntervalMs).unref();
    }
  }

  async #connect(): Promise<void> {
    if (this.isClosed) return;
    const client = clientBeside(this.#pool, { application_name: this.listenerName });
    let lost = false;
    const onLost = (error?: unknown): void => {
      if (lost) return;
      lost = true;
      if (this.#listener === client) this.#listener = undefined;
      this.#channels.clear();
      this.#listening.clear();
      clearTimeout(this.#readTimer);
      this.disconnected(error);
      void client.end().catch(() => {});
      if (!this.isClosed) this.#retryTimer = setTimeout(() => void this.#connect(), this.backoff(this.#attempt++));
    };
    client.on('error', onLost);
    client.on('end', () => onLost());
    // NOTIFY only wakes the reader: what it carries is read from the outbox, in order.
    client.on('notification', () => this.#wake());
    try {
      await this.#tables.ensureOutbox(this.#pool);
      await client.connect();
      if (this.#cursor === undefined || !this.#connectedOnce) this.#cursor = BigInt(await this.#outbox.newest(client));
      else this.#replaying = true; // recover() reads on from the cursor once the node listens again
    } catch (error) {
      onLost(error);
      return;
    }
    if (lost) return;
    if (this.isClosed) {
      await client.end().catch(() => {});
      return;
    }
    this.#listener = client;
    this.#attempt = 0;
    this.#connectedOnce = true;
    this.connected();
  }

  protected async subscribeTopics(topics: readonly Topic[]): Promise<void> {
    const client = this.#listener;
    if (client === undefined) throw new Error('the listener connection is not up');
    // What the node already listens for is read up to now first: the new topics start from here, not from an old cursor.
    if (!this.#replaying) await this.#read();
    const fresh: string[] = [];
    for (const topic of topics) {
      const channel = this.#channelOf(topic);
      const listening = this.#channels.get(channel);
      if (listening === undefined) {
        this.#channels.set(channel, new Set([topic.id]));
        fresh.push(channel);
      } else {
        listening.add(topic.id);
      }
    }
    try {
      for (let i = 0; i < fresh.length; i += LISTENS_PER_QUERY) {
        await this.#onListener(client, fresh.slice(i, i + LISTENS_PER_QUERY).map((channel) => `LISTEN "${channel}"`).join(';'));
      }
    } catch (error) {
      for (const topic of topics) this.#forget(topic);
      throw error;
    }
    for (const topic of topics) this.#listening.set(topic.id, topic);
    // Listening from here: rows committed since the read above are read by the cursor.
    this.#wake();
  }

  protected async unsubscribeTopics(topics: readonly Topic[]): Promise<void> {
    for (const topic of topics) this.#listening.delete(topic.id);
    const ended = topics.map((topic) => this.#forget(topic)).filter((channel) => channel !== undefined);
    const client = this.#listener;
    if (client === undefined) return;
    for (let i = 0; i < ended.length; i += LISTENS_PER_QUERY) {
      await this.#onListener(client, ended.slice(i, i + LISTENS_PER_QUERY).map((channel) => `UNLISTEN "${channel}"`).join(';'));
    }
  }

  /** Runs a query on the listener connection after those before it: a pg client takes one at a time. */
  #onListener<R extends pg.QueryResultRow>(client: pg.Client, text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
    const result = this.#listenerTurn.then(() => client.query<R>(text, values));
    this.#listenerTurn = result.catch(() => {});
    return result;
  }

  /** Takes `topic` off its channel; returns the channel if nothing listens on it any more. */
  #forget(topic: Topic): string | undefined {
    const channel = this.#channelOf(topic);
    const listening = this.#channels.get(channel);
    if (listening === undefined || !listening.delete(topic.id) || listening.size > 0) return undefined;
    this.#channels.delete(channel);
    return channel;
  }

  async engineSubscriptions(): Promise<number> {
    const client = this.#listener;
    if (client === undefined) return 0;
    const { rows } = await this.#onListener<{ count: number }>(client, 'SELECT count(*)::int AS count FROM pg_listening_channels()');
    return rows[0]!.count;
  }

  /** Changes go out in batches, one INSERT at a time: what is notified while one is sent fills the next. */
  protected send(key: string, data: Uint8Array | string): Promise<void> {
    let batch = this.#next;
    if (batch === undefined) {
      let settle!: (error?: Error) => void;
      const done = new Promise<void>((resolve, reject) => (settle = (error) => (error === undefined ? resolve() : reject(error))));
      batch = this.#next = { rows: [], done, settle };
      if (!this.#sending) void this.#sendBatches();
    }
    batch.rows.push([key, data]);
    return batch.done;
  }

  async #sendBatches(): Promise<void> {
    this.#sending = true;
    try {
      // One turn of the event loop lets a burst fill the batch.
      await new Promise((resolve) => setImmediate(resolve));
      for (let batch = this.#next; batch !== undefined; batch = this.#next) {
        this.#next = undefined;
        try {
          await this.#tables.ensureOutbox(this.#pool);
          await this.#outbox.insert(this.#pool, batch.rows);
          batch.settle();
        } catch (cause) {
          const error = cause instanceof Error ? cause : new Error(`the outbox insert failed: ${String(cause)}`);
          batch.settle(error);
          // Lost in transit: what was queued behind it must not overtake it, so it comes back too, unsent, to go again in order.
          const queued = this.#next as SendBatch | undefined; // filled meanwhile
          if (queued !== undefined && this.lostInTransit(error)) {
            this.#next = undefined;
            queued.settle(error);
          }
        }
      }
    } finally {
      this.#sending = false;
    }
  }

  /**
   * A database error refused the batch: counted as failed. Anything else
   * (the connection died, perhaps after the INSERT committed) may have lost
   * it in transit: sent again, and receivers skip it if it had been written.
   */
  protected override lostInTransit(error: unknown): boolean {
    return !(error instanceof pg.DatabaseError) || CONNECTION_LOST.test(error.code ?? '');
  }

  /** After a reconnection: reads on from the cursor, unless the outbox was pruned past it or too much was missed. */
  protected override async recover(): Promise<boolean> {
    const client = this.#listener;
    const cursor = this.#cursor;
    if (client === undefined || cursor === undefined) return false;
    try {
      const { keys, patterns } = this.#filter();
      const missed = await this.#outbox.countAfter(client, cursor.toString(), keys, patterns, this.#maxReplayRows + 1);
      let complete = true;
      if (missed > this.#maxReplayRows) {
        // Too much to replay: skipped, and signalled.
        this.#cursor = BigInt(await this.#outbox.newest(client));
        this.#holes.clear();
        complete = false;
      }
      this.#replaying = false;
      await this.#read();
      if (!complete) this.signalGap('replay-incomplete');
      return true;
    } finally {
      this.#replaying = false;
    }
  }

  protected async shutdown(): Promise<void> {
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#readTimer);
    clearInterval(this.#pruneTimer);
    const listener = this.#listener;
    this.#listener = undefined;
    await listener?.end().catch(() => {});
    if (this.#ownsPool) await this.#pool.end();
  }

  /** Deletes outbox rows past the age or count limit now; returns how many. */
  async prune(): Promise<number> {
    await this.#tables.ensureOutbox(this.#pool);
    return this.#outbox.prune(this.#pool, this.#maxAgeMs, this.#maxRows);
  }

  // ---- receiving: one ordered path ----

  /** Something may have been written: read (again, once the running read is done). */
  #wake(): void {
    if (this.#reading !== undefined || this.#replaying) {
      this.#readAgain = true;
      return;
    }
    void this.#read().catch(() => {});
  }

  /** Reads every row past the cursor, and the holes, in id order; on failure tries again later, the cursor where it was. */
  #read(): Promise<void> {
    this.#reading ??= (async () => {
      try {
        do {
          this.#readAgain = false;
          while (await this.#readPage());
        } while (this.#readAgain);
        this.#readAttempt = 0;
      } catch (error) {
        this.reportError(error);
        if (this.#listener !== undefined && !this.isClosed) {
          clearTimeout(this.#readTimer);
          this.#readTimer = setTimeout(() => this.#wake(), this.backoff(this.#readAttempt++));
        }
        throw error;
      } finally {
        this.#reading = undefined;
      }
    })();
    return this.#reading;
  }

  /** The keys and patterns the listener holds: rows of other keys are read for their ids only. */
  #filter(): { keys: string[]; patterns: string[] } {
    const keys: string[] = [];
    const patterns: string[] = [];
    for (const topic of this.#listening.values()) (topic.pattern ? patterns : keys).push(topic.name);
    return { keys, patterns };
  }

  /** Reads one page; true if there may be more. */
  async #readPage(): Promise<boolean> {
    const client = this.#listener;
    const cursor = this.#cursor;
    if (client === undefined || cursor === undefined) return false;
    const { keys, patterns } = this.#filter();
    const page = await this.#outbox.read(
      (text, values) => this.#onListener(client, text, values), cursor.toString(), [...this.#holes.keys()].map(String), keys, patterns, PAGE,
    );
    if (this.#listener !== client) return false;
    const now = Date.now();
    let last = cursor;
    let gap = false;
    // Rows pruned before this node read them: given up, and signalled.
    if (page.pruned > last) {
      last = page.pruned;
      gap = true;
    }
    for (const row of page.rows) {
      const id = BigInt(row.id);
      if (id <= last) {
        this.#holes.delete(id); // a late commit, below the cursor: delivered now, in the order it became visible
      } else {
        // Ids between the cursor and this row have not committed (or never will): looked for until that is known.
        let from = last + 1n;
        if (id - from > BigInt(MAX_HOLES)) {
          from = id - BigInt(MAX_HOLES); // more missing ids than can be looked for: the oldest are given up
          gap = true;
        }
        for (let hole = from; hole < id; hole++) {
          if (this.#holes.size >= MAX_HOLES) {
            this.#holes.delete(this.#holes.keys().next().value!);
            gap = true;
          }
          this.#holes.set(hole, { xmax: page.xmax, at: now });
        }
        last = id;
      }
      if (row.payload !== null) this.#deliver(row.payload);
    }
    this.#cursor = last;
    // Holes no running transaction can fill any more were rolled back, or committed and pruned unread (a gap).
    // One still fillable after HOLE_MAX_AGE_MS (a transaction held open somewhere) is given up, and signalled.
    for (const [id, hole] of this.#holes) {
      const age = now - hole.at;
      if (age < HOLE_MIN_AGE_MS) continue;
      if (hole.xmax > page.xmin) {
        if (age < HOLE_MAX_AGE_MS) continue;
        gap = true;
      } else if (id <= page.pruned) {
        gap = true; // it may have committed, and been pruned unread
      }
      this.#holes.delete(id);
    }
    if (gap) this.signalGap('replay-incomplete');
    return page.rows.length >= PAGE;
  }

  #deliver(payload: Buffer): void {
    this.receive(payload, (change: WireChange) => {
      const seen = `${change.n}@${change.origin}`;
      if (this.#seen.has(seen)) return false;
      this.#seen.add(seen);
      this.#seenOrder.push(seen);
      if (this.#seenOrder.length > SEEN_CHANGES) this.#seen.delete(this.#seenOrder.shift()!);
      return true;
    });
  }

  /** A key listens on its own channel; a pattern on the channel of its literal prefix (a pattern without wildcards, on its key's). */
  #channelOf(topic: Topic): string {
    return topic.pattern ? this.#outbox.patternChannel(topic.name) : this.#outbox.keyChannel(topic.name);
  }
}

/**
 * On a hub whose backplane is a {@link PostgresBackplane}: writes the
 * batch's changes to the outbox with `client`, inside its open transaction,
 * so that the announcement to the other nodes commits or rolls back with it.
 * Otherwise does nothing, and `pending.commit()` publishes as usual. @internal
 */
export async function stageOutbox(hub: ObserverManager, client: pg.ClientBase, pending: PendingNotifications): Promise<void> {
  const backplane = hub.backplane;
  if (!(backplane instanceof PostgresBackplane) || pending.size === 0) return;
  const changes = pending.takeForOutbox();
  if (changes !== undefined) await backplane.stage(client, changes);
}
