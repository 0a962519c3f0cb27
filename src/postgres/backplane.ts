import pg from 'pg';
import { Backplane, type BackplaneOptions } from '../cluster/backplane.js';
import type { WireChange } from '../cluster/codec.js';
import { assertOptions, integerOption, MAX_TIMER_MS } from '../core/assert.js';
import { Deque } from '../core/deque.js';
import type { BatchedChange, PendingNotifications } from '../delivery/pending.js';
import type { ObserverManager } from '../hub/observer-manager.js';
import { Outbox, type OutboxRow, type StoredOutboxRow } from './outbox.js';
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
  /** Rows replayed at most after one reconnection; past it the rest is signalled as a gap. @default 100000 */
  readonly maxReplayRows?: number;
} & PoolSource;


/** A bytea column takes up to 1 GB; the outbox row is what carries the change, NOTIFY only its id. */
const BYTEA_MAX = 1024 * 1024 * 1024 - 1;
/** Changes remembered as delivered, for skipping them in a replay or when sent twice. */
const SEEN_CHANGES = 100_000;

/**
 * A backplane on PostgreSQL LISTEN/NOTIFY with an outbox table. Each change
 * is a row of `<schema>.outbox`, and NOTIFY carries only its id, so values
 * far past NOTIFY's 8000 bytes travel. A key listens on a channel of its own
 * (a hash of the key) and a pattern on the channel of its literal prefix, so
 * `pg_listening_channels()` shows just what this node observes. After a lost
 * listener connection, the node replays from the outbox what it missed: no
 * change is lost or delivered twice unless the outbox was pruned past it.
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
  #attempt = 0;
  /** Topic ('k:' or 'p:' + name) → the channel it listens on now; patterns with one literal prefix share a channel. */
  readonly #listening = new Map<string, string>();
  /** Ids announced by NOTIFY and not fetched yet. */
  #pendingIds: string[] = [];
  #fetching = false;
  /**
   * Changes delivered lately, as origin and message number: a replay skips
   * them, and so does a change sent again after its connection was lost
   * (a second row with the same change). With their outbox ids, oldest first.
   */
  readonly #seen = new Set<string>();
  readonly #seenOrder = new Deque<readonly [id: string, change: string]>();
  /** Replays start after this id: everything up to it was delivered, or was before this node began. */
  #floor: string | undefined;
  /** Sends go one batch at a time, so one node's changes commit in the order they were notified. */
  #batch: OutboxRow[] = [];
  #sending: Promise<void> | undefined;

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
    await this.#ensureTable();
    const at = Date.now();
    await this.#outbox.insert(client, changes.map((c) => [c.key, this.encode(c.key, c.oldValue, c.newValue, c.meta, at)] as const));
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
      this.#listening.clear();
      this.disconnected(error);
      void client.end().catch(() => {});
      if (!this.isClosed) this.#retryTimer = setTimeout(() => void this.#connect(), this.backoff(this.#attempt++));
    };
    client.on('error', onLost);
    client.on('end', () => onLost());
    client.on('notification', (message) => this.#notified(message.payload));
    try {
      await this.#ensureTable();
      await client.connect();
      this.#floor ??= await this.#outbox.newest(client);
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
    this.connected();
  }

  protected async subscribe(name: string, pattern: boolean): Promise<void> {
    const client = this.#listener;
    if (client === undefined) return;
    const channel = this.#channelOf(name, pattern);
    if (![...this.#listening.values()].includes(channel)) await client.query(`LISTEN "${channel}"`);
    this.#listening.set((pattern ? 'p:' : 'k:') + name, channel);
  }

  protected async unsubscribe(name: string, pattern: boolean): Promise<void> {
    const channel = this.#channelOf(name, pattern);
    this.#listening.delete((pattern ? 'p:' : 'k:') + name);
    const client = this.#listener;
    if (client !== undefined && ![...this.#listening.values()].includes(channel)) await client.query(`UNLISTEN "${channel}"`);
  }

  protected hasSubscription(name: string, pattern: boolean): boolean {
    return this.#listening.has((pattern ? 'p:' : 'k:') + name);
  }

  protected subscriptionCount(): number {
    return this.#listening.size;
  }

  async engineSubscriptions(): Promise<number> {
    const client = this.#listener;
    if (client === undefined) return 0;
    const { rows } = await client.query<{ count: number }>('SELECT count(*)::int AS count FROM pg_listening_channels()');
    return rows[0]!.count;
  }

  protected send(key: string, data: Uint8Array | string): Promise<void> {
    this.#batch.push([key, data]);
    this.#sending ??= this.#sendBatches();
    return this.#sending;
  }

  async #sendBatches(): Promise<void> {
    try {
      await this.#ensureTable();
      while (this.#batch.length > 0) {
        const rows = this.#batch;
        this.#batch = [];
        await this.#outbox.insert(this.#pool, rows);
      }
    } finally {
      this.#sending = undefined;
      this.#batch = [];
    }
  }

  /** Replays what the listener missed while it was away: rows past the floor, of keys this node observes, not seen yet. */
  protected override async recover(): Promise<boolean> {
    const client = this.#listener;
    const floor = this.#floor;
    if (client === undefined || floor === undefined) return false;
    const keys: string[] = [];
    const patterns: string[] = [];
    for (const [name, pattern] of this.wantedTopics()) (pattern ? patterns : keys).push(name);
    if (keys.length === 0 && patterns.length === 0) return true;
    const rows = await this.#outbox.after(client, floor, keys, patterns, this.#maxReplayRows + 1);
    const oldest = await this.#outbox.oldest(client);
    const pruned = oldest !== undefined && BigInt(oldest) > BigInt(floor) + 1n;
    for (const row of rows.slice(0, this.#maxReplayRows)) this.#deliver(row);
    if (pruned || rows.length > this.#maxReplayRows) this.signalGap('replay-incomplete');
    return true;
  }

  protected async shutdown(): Promise<void> {
    clearTimeout(this.#retryTimer);
    clearInterval(this.#pruneTimer);
    await this.#sending?.catch(() => {});
    const listener = this.#listener;
    this.#listener = undefined;
    await listener?.end().catch(() => {});
    if (this.#ownsPool) await this.#pool.end();
  }

  /** Deletes outbox rows past the age or count limit now; returns how many. */
  async prune(): Promise<number> {
    await this.#ensureTable();
    return this.#outbox.prune(this.#pool, this.#maxAgeMs, this.#maxRows);
  }

  // ---- receiving ----

  #notified(payload: string | undefined): void {
    if (payload === undefined || !/^[1-9][0-9]{0,18}$/.test(payload)) {
      this.counters.malformed++;
      return;
    }
    this.#pendingIds.push(payload);
    if (!this.#fetching) {
      this.#fetching = true;
      setImmediate(() => void this.#fetch());
    }
  }

  /** Fetches the rows behind the ids that NOTIFY announced, in id order, as many per query as have arrived. */
  async #fetch(): Promise<void> {
    try {
      while (this.#pendingIds.length > 0) {
        const client = this.#listener;
        if (client === undefined) break; // the replay after reconnecting covers them
        const ids = this.#pendingIds;
        this.#pendingIds = [];
        const rows = await this.#outbox.fetch(client, ids);
        this.counters.malformed += new Set(ids).size - rows.length;
        for (const row of rows) this.#deliver(row);
      }
    } catch (error) {
      this.reportError(error);
    } finally {
      this.#pendingIds = [];
      this.#fetching = false;
    }
  }

  #deliver({ id, payload }: StoredOutboxRow): void {
    this.receive(payload, (change: WireChange) => {
      const seen = `${change.n}@${change.origin}`;
      if (this.#seen.has(seen)) return false;
      this.#remember(id, seen);
      return true;
    });
  }

  #remember(id: string, seen: string): void {
    this.#seen.add(seen);
    this.#seenOrder.push([id, seen]);
    if (this.#seenOrder.length > SEEN_CHANGES) {
      const [oldestId, oldest] = this.#seenOrder.shift()!;
      this.#seen.delete(oldest);
      if (BigInt(oldestId) > BigInt(this.#floor ?? '0')) this.#floor = oldestId;
    }
  }

  /**
   * While the listener is away too, a connection error (not a database
   * error) lost the change with the server: it is sent again after the
   * reconnection, and receivers skip it if it had been written after all.
   * With the listener up, one pooled connection failed: counted as failed.
   */
  protected override lostInTransit(error: unknown): boolean {
    return this.#listener === undefined && !(error instanceof pg.DatabaseError);
  }

  /** A key listens on its own channel, a pattern on the channel of its literal prefix. */
  #channelOf(name: string, pattern: boolean): string {
    return pattern ? this.#outbox.patternChannel(name) : this.#outbox.keyChannel(name);
  }

  #ensureTable(): Promise<void> {
    return this.#tables.ensureOutbox(this.#pool);
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
