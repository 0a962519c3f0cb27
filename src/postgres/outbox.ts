import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { PostgresSchema } from './schema.js';

/** A change as the outbox holds it: its key and its encoded message. @internal */
export type OutboxRow = readonly [key: string, data: Uint8Array | string];

/** A row read back from the outbox: its id, and its payload when its key is one the reader wants. @internal */
export interface OutboxRead {
  readonly id: string;
  readonly payload: Buffer | null;
}

/** One read of the outbox, with the snapshot it was made in. @internal */
export interface OutboxPage {
  readonly rows: OutboxRead[];
  /** The oldest transaction still running when it was read: every older one has ended. */
  readonly xmin: bigint;
  /** The next transaction id then: every transaction that had written by then is below it. */
  readonly xmax: bigint;
  /** The highest id pruned so far (0 before any): rows up to it may be gone. */
  readonly pruned: bigint;
}

/** Runs a query for {@link Outbox.read}. @internal */
export type Query = (text: string, values: unknown[]) => Promise<pg.QueryResult<OutboxRead & { xmin: string; xmax: string; pruned: string | null }>>;

/**
 * The SQL of the outbox table: each change a row, its id sent by NOTIFY on
 * the channel of its key and on the channel of each proper prefix of its key
 * (for patterns). Channels are hashes, so any key fits NOTIFY's 63-byte
 * channel names, and schemas never share a channel. @internal
 */
export class Outbox {
  constructor(readonly tables: PostgresSchema, readonly origin: string) {}

  /** Inserts `rows` with `client` (inside its transaction, if one is open), in order, and sends their NOTIFYs (at COMMIT). */
  async insert(client: pg.ClientBase | pg.Pool, rows: readonly OutboxRow[]): Promise<void> {
    if (rows.length === 0) return;
    await client.query(
      `WITH ins AS (
        INSERT INTO ${this.tables.outbox} (origin, key, payload)
        SELECT $1, k, p FROM unnest($2::text[], $3::bytea[]) WITH ORDINALITY AS t(k, p, i) ORDER BY i
        RETURNING id, key)
      SELECT pg_notify(c.channel, ins.id::text)
        FROM ins JOIN unnest($4::text[], $5::text[]) AS c(key, channel) ON c.key = ins.key
        ORDER BY ins.id`,
      this.#insertParams(rows),
    );
  }

  /**
   * The rows after id `after` and those of the ids in `holes`, in id order,
   * at most `limit` after `after`: every row's id, and the payload of those
   * whose key is one of `keys` or matches one of `patterns` (null for the
   * others). With the read's snapshot (the oldest transaction still running,
   * and the next transaction id) and the oldest id kept. `query` runs the SQL
   * (on the caller's connection, in its turn).
   */
  async read(
    query: Query, after: string, holes: readonly string[], keys: readonly string[], patterns: readonly string[], limit: number,
  ): Promise<OutboxPage> {
    const { exact, prefixes } = match(keys, patterns);
    const columns = 'o.id, CASE WHEN o.key = ANY($2::text[]) OR o.key LIKE ANY($3::text[]) THEN o.payload END AS payload';
    // Two range scans of the primary key, not one condition with OR (which would scan the whole table).
    const next = `SELECT ${columns} FROM ${this.tables.outbox} o WHERE o.id > $1::bigint ORDER BY o.id LIMIT $4`;
    const late = `SELECT ${columns} FROM ${this.tables.outbox} o WHERE o.id = ANY($5::bigint[])`;
    const { rows } = await query(
      `WITH snap AS (
         SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin, pg_snapshot_xmax(pg_current_snapshot())::text AS xmax,
                (SELECT pruned_through FROM ${this.tables.outboxState} WHERE id = 1)::text AS pruned)
       SELECT r.id::text AS id, r.payload, snap.xmin, snap.xmax, snap.pruned
         FROM snap LEFT JOIN ((${next}) UNION ALL (${late})) r ON true
        ORDER BY r.id`,
      [after, exact, prefixes, limit, holes],
    );
    const first = rows[0] as { xmin: string; xmax: string; pruned: string | null };
    return {
      rows: rows.filter((row) => row.id !== null),
      xmin: BigInt(first.xmin),
      xmax: BigInt(first.xmax),
      pruned: first.pruned === null ? 0n : BigInt(first.pruned),
    };
  }

  /** How many rows after `after` are of `keys` or match `patterns`, counted up to `limit`. */
  async countAfter(client: pg.ClientBase, after: string, keys: readonly string[], patterns: readonly string[], limit: number): Promise<number> {
    const { exact, prefixes } = match(keys, patterns);
    const { rows } = await client.query<{ count: number }>(
      `SELECT count(*)::int AS count FROM (SELECT 1 FROM ${this.tables.outbox} o
         WHERE o.id > $1::bigint AND (o.key = ANY($2::text[]) OR o.key LIKE ANY($3::text[])) LIMIT $4) r`,
      [after, exact, prefixes, limit],
    );
    return rows[0]!.count;
  }

  /** The newest id, or '0' for an empty outbox. */
  async newest(client: pg.ClientBase): Promise<string> {
    const { rows } = await client.query<{ max: string }>(`SELECT coalesce(max(id), 0)::text AS max FROM ${this.tables.outbox}`);
    return rows[0]!.max;
  }

  /** Deletes rows older than `maxAgeMs` or past the newest `maxRows`, and notes the highest id deleted; returns how many. */
  async prune(pool: pg.Pool, maxAgeMs: number, maxRows: number): Promise<number> {
    const { rows } = await pool.query<{ count: number }>(
      `WITH gone AS (
         DELETE FROM ${this.tables.outbox} WHERE created_at < now() - make_interval(secs => $1)
            OR id <= (SELECT max(id) FROM ${this.tables.outbox}) - $2
         RETURNING id),
       noted AS (
         INSERT INTO ${this.tables.outboxState} (id, pruned_through) SELECT 1, max(id) FROM gone HAVING count(*) > 0
         ON CONFLICT (id) DO UPDATE SET pruned_through = GREATEST(${this.tables.outboxState}.pruned_through, EXCLUDED.pruned_through))
       SELECT count(*)::int AS count FROM gone`,
      [maxAgeMs / 1000, maxRows],
    );
    return rows[0]!.count;
  }

  /** The channel a key's changes are sent on. */
  keyChannel(key: string): string {
    return this.#channel('k', key);
  }

  /**
   * The channel a pattern listens on: that of its literal prefix, which every
   * key under the prefix is sent on too; a pattern without wildcards matches
   * one key only, and listens on that key's channel.
   */
  patternChannel(pattern: string): string {
    const prefix = literalPrefix(pattern);
    return prefix === pattern ? this.keyChannel(pattern) : this.#channel('p', prefix);
  }

  #insertParams(rows: readonly OutboxRow[]): unknown[] {
    const keys: string[] = [];
    const payloads: Buffer[] = [];
    const channelKeys: string[] = [];
    const channels: string[] = [];
    const done = new Set<string>();
    for (const [key, data] of rows) {
      keys.push(key);
      payloads.push(typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      if (done.has(key)) continue;
      done.add(key);
      channelKeys.push(key);
      channels.push(this.keyChannel(key));
      const segments = key.split('/');
      for (let i = 0; i < segments.length; i++) {
        channelKeys.push(key);
        channels.push(this.#channel('p', segments.slice(0, i).join('/')));
      }
    }
    return [this.origin, keys, payloads, channelKeys, channels];
  }

  #channel(kind: 'k' | 'p', name: string): string {
    return `herald_${kind}_${createHash('sha1').update(`${this.tables.name}\0${name}`).digest('hex')}`;
  }
}

/** The segments of a pattern before its first wildcard, joined: `"a/b/*"` → `"a/b"`, `"*"` → `""`, `"a/b"` → `"a/b"`. */
/** Keys and patterns as the SQL matches them: exact keys (a pattern without wildcards is one), and LIKE prefixes. */
function match(keys: readonly string[], patterns: readonly string[]): { exact: string[]; prefixes: string[] } {
  const exact = [...keys];
  const prefixes: string[] = [];
  for (const pattern of patterns) {
    const prefix = literalPrefix(pattern);
    if (prefix === pattern) exact.push(pattern);
    else prefixes.push(prefix === '' ? '%' : `${likeEscape(prefix)}/%`);
  }
  return { exact, prefixes };
}

function literalPrefix(pattern: string): string {
  const segments = pattern.split('/');
  const first = segments.findIndex((s) => s === '*' || s === '**');
  return segments.slice(0, first === -1 ? segments.length : first).join('/');
}

function likeEscape(text: string): string {
  return text.replace(/[\\%_]/g, '\\$&');
}
