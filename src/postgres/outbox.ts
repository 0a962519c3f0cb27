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
   * at most `limit`: every row's id, and the payload of those whose key is
   * one of `keys` or matches one of `patterns` (null for the others).
   */
  async read(
    client: pg.ClientBase, after: string, holes: readonly string[], keys: readonly string[], patterns: readonly string[], limit: number,
  ): Promise<OutboxRead[]> {
    const exact = [...keys];
    const prefixes: string[] = [];
    for (const pattern of patterns) {
      const prefix = literalPrefix(pattern);
      if (prefix === pattern) exact.push(pattern);
      else prefixes.push(prefix === '' ? '%' : `${likeEscape(prefix)}/%`);
    }
    const columns = 'o.id, CASE WHEN o.key = ANY($2::text[]) OR o.key LIKE ANY($3::text[]) THEN o.payload END AS payload';
    // Two range scans of the primary key, not one condition with OR (which would scan the whole table).
    const next = `SELECT ${columns} FROM ${this.tables.outbox} o WHERE o.id > $1::bigint ORDER BY o.id LIMIT $4`;
    const { rows } = holes.length === 0
      ? await client.query<OutboxRead>(`SELECT id::text AS id, payload FROM (${next}) r`, [after, exact, prefixes, limit])
      : await client.query<OutboxRead>(
        `SELECT id::text AS id, payload FROM ((${next})
           UNION ALL SELECT ${columns} FROM ${this.tables.outbox} o WHERE o.id = ANY($5::bigint[])) r
          ORDER BY id`,
        [after, exact, prefixes, limit, holes],
      );
    return rows;
  }

  /** The newest id, or '0' for an empty outbox. */
  async newest(client: pg.ClientBase): Promise<string> {
    const { rows } = await client.query<{ max: string }>(`SELECT coalesce(max(id), 0)::text AS max FROM ${this.tables.outbox}`);
    return rows[0]!.max;
  }

  /** The oldest id still kept, if any. */
  async oldest(client: pg.ClientBase): Promise<string | undefined> {
    const { rows } = await client.query<{ min: string | null }>(`SELECT min(id)::text AS min FROM ${this.tables.outbox}`);
    return rows[0]?.min ?? undefined;
  }

  /** Deletes rows older than `maxAgeMs` or past the newest `maxRows`; returns how many. */
  async prune(pool: pg.Pool, maxAgeMs: number, maxRows: number): Promise<number> {
    const result = await pool.query(
      `DELETE FROM ${this.tables.outbox} WHERE created_at < now() - make_interval(secs => $1)
          OR id <= (SELECT max(id) FROM ${this.tables.outbox}) - $2`,
      [maxAgeMs / 1000, maxRows],
    );
    return result.rowCount ?? 0;
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
function literalPrefix(pattern: string): string {
  const segments = pattern.split('/');
  const first = segments.findIndex((s) => s === '*' || s === '**');
  return segments.slice(0, first === -1 ? segments.length : first).join('/');
}

function likeEscape(text: string): string {
  return text.replace(/[\\%_]/g, '\\$&');
}
