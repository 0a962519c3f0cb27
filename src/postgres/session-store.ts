import pg from 'pg';
import { HeraldError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import { integerOption, MAX_TIMER_MS } from '../core/assert.js';
import type { PendingNotifications } from '../delivery/pending.js';
import { noSession, SessionStoreBase, type SessionInfo, type StoreOptions, type StoredVariable, type Unit, type UnitAccess, type VariableEntry } from '../store/store.js';
import { stageOutbox } from './backplane.js';
import { resolvePool } from './pool.js';
import { PostgresSchema } from './schema.js';
import { inTransaction, RESOLVE_WITHIN_MS } from './transaction.js';

/** Options of {@link PostgresSessionStore}: a `pool` of yours, or a `connectionString` for one the store owns. */
export type PostgresStoreOptions = StoreOptions & {
  /** Where the store's tables live; created on first use. @default 'herald' */
  readonly schema?: string;
  /**
   * When the connection dies after a COMMIT was sent, how long the store asks
   * the server whether it committed (announcing it if so) before the call
   * rejects with `HERALD_IN_DOUBT`. @default 10000
   */
  readonly commitCheckMs?: number;
} & ({ readonly pool: pg.Pool; readonly connectionString?: never } | { readonly connectionString: string; readonly pool?: never });

interface SessionRow {
  id: string;
  created_at: string;
  expires_at: string | null;
  meta: JsonValue;
}

/**
 * The durable session store: sessions and variables in PostgreSQL (values as
 * JSONB), changes announced through the hub only after COMMIT has succeeded.
 * Each operation is one transaction that locks its session's row, so
 * concurrent writers on any number of connections never lose an update.
 *
 * @example
 * ```ts
 * const store = new PostgresSessionStore({ hub, connectionString: 'postgres://postgres@127.0.0.1:5432/test' });
 * await store.createSession('42');
 * await store.transaction('42', async (tx) => {
 *   await tx.set('balance', ((await tx.get('balance')) as number ?? 0) + 10);
 * }); // announced after COMMIT, once, with meta.txId
 * ```
 */
export class PostgresSessionStore extends SessionStoreBase {
  readonly #pool: pg.Pool;
  readonly #ownsPool: boolean;
  readonly #tables: PostgresSchema;
  readonly #sessions: string;
  readonly #tombstones: string;
  readonly #variables: string;
  readonly #commitCheckMs: number;

  constructor(options: PostgresStoreOptions) {
    super(options);
    // An idle client whose connection dies is dropped by the pool; the store has nobody to tell.
    const { schema, pool, owned } = resolvePool(options, () => {});
    this.#pool = pool;
    this.#ownsPool = owned;
    this.#tables = new PostgresSchema(schema);
    ({ sessions: this.#sessions, tombstones: this.#tombstones, variables: this.#variables } = this.#tables);
    this.#commitCheckMs = integerOption(options.commitCheckMs, 'options.commitCheckMs', RESOLVE_WITHIN_MS, 1, MAX_TIMER_MS);
  }

  /** The pool the store uses (its own, or the one it was given). */
  get pool(): pg.Pool {
    return this.#pool;
  }

  protected async doCreateSession(sessionId: string, expiresAt: number | undefined, meta: JsonValue): Promise<SessionInfo | undefined> {
    const { rows } = await this.#query<SessionRow>('create the session',
      `INSERT INTO ${this.#sessions} (id, created_at, expires_at, meta) VALUES ($1, $2, $3, $4::jsonb)
       ON CONFLICT (id) DO NOTHING
       RETURNING id, created_at, expires_at, meta`,
      [sessionId, Date.now(), expiresAt ?? null, JSON.stringify(meta)],
    );
    return rows[0] === undefined ? undefined : toInfo(rows[0]);
  }

  protected async doGetSession(sessionId: string): Promise<SessionInfo | undefined> {
    const { rows } = await this.#query<SessionRow>('read the session', `SELECT id, created_at, expires_at, meta FROM ${this.#sessions} WHERE id = $1`, [sessionId]);
    return rows[0] === undefined ? undefined : toInfo(rows[0]);
  }

  protected async doTouch(sessionId: string, expiresAt: number | undefined): Promise<SessionInfo | undefined> {
    const { rows } = await this.#query<SessionRow>('touch the session',
      `UPDATE ${this.#sessions} SET expires_at = $2 WHERE id = $1 AND (expires_at IS NULL OR expires_at > $3)
       RETURNING id, created_at, expires_at, meta`,
      [sessionId, expiresAt ?? null, Date.now()],
    );
    return rows[0] === undefined ? undefined : toInfo(rows[0]);
  }

  protected async doListSessions(): Promise<SessionInfo[]> {
    const { rows } = await this.#query<SessionRow>('list the sessions', `SELECT id, created_at, expires_at, meta FROM ${this.#sessions} ORDER BY id`, []);
    return rows.map(toInfo);
  }

  protected async doGet(sessionId: string, name: string): Promise<StoredVariable | undefined> {
    const { rows } = await this.#query<StoredRow>('read the variable',
      `SELECT value, value IS NULL AS unset, version FROM ${this.#variables} WHERE session_id = $1 AND name = $2`, [sessionId, name],
    );
    return rows[0] === undefined ? undefined : toStored(rows[0]);
  }

  protected async doList(sessionId: string): Promise<VariableEntry[] | undefined> {
    const { rows } = await this.#query<StoredRow & { name: string }>('list the variables',
      `SELECT name, value, value IS NULL AS unset, version FROM ${this.#variables} WHERE session_id = $1 ORDER BY name`, [sessionId],
    );
    return rows.map((row) => ({ name: row.name, ...toStored(row) }));
  }

  protected override async doExistingSessions(ids: readonly string[]): Promise<Map<string, number>> {
    const { rows } = await this.#query<{ id: string; created_at: string }>('find the watched sessions',
      `SELECT id, created_at FROM ${this.#sessions} WHERE id = ANY($1)`, [ids],
    );
    return new Map(rows.map((row) => [row.id, Number(row.created_at)]));
  }

  protected async doExpiredSessions(now: number): Promise<string[]> {
    const { rows } = await this.#query<{ id: string }>('find the expired sessions',
      `SELECT id FROM ${this.#sessions} WHERE expires_at IS NOT NULL AND expires_at <= $1`, [now],
    );
    return rows.map((row) => row.id);
  }

  protected async doUnit<R>(
    sessionId: string, work: (unit: Unit) => Promise<R>, access: UnitAccess, prefetch: string | undefined,
    announcements: () => PendingNotifications | undefined, locked: () => void,
  ): Promise<R> {
    await this.#ensureTables();
    try {
      return await inTransaction(this.#pool, async (transaction) => {
        const client = transaction.client;
        // BEGIN, the session's row lock and (for a one-variable operation) that variable, in one round trip.
        // The variable is read by its own statement, after the lock is held: under READ COMMITTED each
        // statement sees what committed before it began, where a join in the locking statement could see
        // a value from before the wait. The session lock serialises every unit on the session, so variable
        // rows need no lock of their own.
        // The sweep never waits for a transaction that holds the session: SKIP LOCKED finds no row, a later sweep ends it.
        // The lock's row carries the transaction's id and backend pid too, for a lost COMMIT reply: no statement of their own.
        const lock = `SELECT expires_at, pg_current_xact_id()::text AS xid, pg_backend_pid() AS pid FROM ${this.#sessions}
          WHERE id = ${client.escapeLiteral(sessionId)} FOR UPDATE${access === 'sweeping' ? ' SKIP LOCKED' : ''}`;
        const fetch = prefetch === undefined
          ? ''
          : `; SELECT value, value IS NULL AS unset, version FROM ${this.#variables}
              WHERE session_id = ${client.escapeLiteral(sessionId)} AND name = ${client.escapeLiteral(prefetch)}`;
        const results = await transaction.begin('', `${lock}${fetch}`, false);
        // Held from here until COMMIT: the units of a session commit in the order they get here.
        locked();
        const row = (results[0] as pg.QueryResult<{ expires_at: string | null; xid: string; pid: number }> | undefined)?.rows[0];
        if (row !== undefined) transaction.identify(row);
        if (row === undefined || (access === 'live' && row.expires_at !== null && Number(row.expires_at) <= Date.now())) throw noSession(sessionId);
        // What this unit knows of its variables, its own writes included; the writes wait for the COMMIT.
        const known = new Map<string, StoredVariable | undefined>();
        /** This unit's own removals, with their versions. */
        const removed = new Map<string, number>();
        const writes: string[] = [];
        if (prefetch !== undefined) {
          const variable = (results[1] as pg.QueryResult<StoredRow> | undefined)?.rows[0];
          known.set(prefetch, variable === undefined ? undefined : toStored(variable));
        }
        const unit: Unit = {
          read: async (name) => {
            if (known.has(name)) return known.get(name);
            const result = await client.query<StoredRow>(
              `SELECT value, value IS NULL AS unset, version FROM ${this.#variables} WHERE session_id = $1 AND name = $2`, [sessionId, name],
            ).catch((error: unknown) => {
              throw storeError('could not read the variable in the transaction; it was rolled back', error);
            });
            const stored = result.rows[0] === undefined ? undefined : toStored(result.rows[0]);
            known.set(name, stored);
            return stored;
          },
          write: (name, value, version) => {
            const json = value === undefined ? 'NULL' : `${client.escapeLiteral(JSON.stringify(value))}::jsonb`;
            writes.push(`INSERT INTO ${this.#variables} (session_id, name, value, version)
              VALUES (${client.escapeLiteral(sessionId)}, ${client.escapeLiteral(name)}, ${json}, ${version})
              ON CONFLICT (session_id, name) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version`);
            known.set(name, { value, version });
            return Promise.resolve();
          },
          remove: (name, version) => {
            const where = `session_id = ${client.escapeLiteral(sessionId)} AND name = ${client.escapeLiteral(name)}`;
            writes.push(`DELETE FROM ${this.#variables} WHERE ${where}`);
            writes.push(`INSERT INTO ${this.#tombstones} (session_id, name, version)
              VALUES (${client.escapeLiteral(sessionId)}, ${client.escapeLiteral(name)}, ${version})
              ON CONFLICT (session_id, name) DO UPDATE SET version = EXCLUDED.version`);
            known.set(name, undefined);
            removed.set(name, version);
            return Promise.resolve();
          },
          tombstone: async (name) => {
            const own = removed.get(name);
            if (own !== undefined) return own;
            const result = await client.query<{ version: string }>(
              `SELECT version FROM ${this.#tombstones} WHERE session_id = $1 AND name = $2`, [sessionId, name],
            ).catch((error: unknown) => {
              throw storeError('could not read the variable in the transaction; it was rolled back', error);
            });
            return result.rows[0] === undefined ? 0 : Number(result.rows[0].version);
          },
          dropSession: async () => {
            const result = await client.query<StoredRow & { name: string }>(
              `SELECT name, value, value IS NULL AS unset, version FROM ${this.#variables} WHERE session_id = $1 ORDER BY name`, [sessionId],
            ).catch((error: unknown) => {
              throw storeError('could not read the session\'s variables in the transaction; it was rolled back', error);
            });
            writes.push(`DELETE FROM ${this.#sessions} WHERE id = ${client.escapeLiteral(sessionId)}`);
            return result.rows.map((r) => ({ name: r.name, ...toStored(r) }));
          },
        };
        let result: R;
        try {
          result = await work(unit);
        } catch (error) {
          throw new UnitFailure(error);
        }
        const pending = announcements();
        // On a hub with a PostgreSQL backplane, the announcement joins this transaction's outbox.
        if (pending !== undefined) await stageOutbox(this.hub, client, pending);
        // The unit's writes go with the COMMIT, in one round trip; a lost reply is looked into, never taken for a rollback.
        await transaction.commit(writes);
        return result;
      }, this.#commitCheckMs);
    } catch (error) {
      // What the unit's work threw (the caller's own error, or a coded one) is rethrown as it is.
      if (error instanceof UnitFailure) throw error.error;
      if (error instanceof HeraldError) throw error;
      throw storeError('the transaction failed and was rolled back; nothing was changed or announced', error);
    }
  }

  protected async doClose(): Promise<void> {
    if (this.#ownsPool) await this.#pool.end();
  }

  /** A query outside a transaction: an engine failure becomes a `HERALD_STORE` error that says what could not be done. */
  async #query<T extends pg.QueryResultRow>(what: string, text: string, values: unknown[]): Promise<pg.QueryResult<T>> {
    await this.#ensureTables();
    try {
      return await this.#pool.query<T>(text, values);
    } catch (error) {
      throw storeError(`could not ${what}`, error);
    }
  }

  #ensureTables(): Promise<void> {
    return this.#tables.ensureStore(this.#pool).catch((error: unknown) => {
      throw storeError(`could not create the tables in schema "${this.#tables.name}"`, error);
    });
  }
}

function toInfo(row: SessionRow): SessionInfo {
  return Object.freeze({
    id: row.id,
    createdAt: Number(row.created_at),
    expiresAt: row.expires_at === null ? undefined : Number(row.expires_at),
    meta: row.meta,
  });
}

interface StoredRow {
  value: JsonValue | null;
  /** SQL NULL (a variable defined but never set); JSON null arrives as `null` too, so this tells them apart. */
  unset: boolean;
  version: string;
}

function toStored(row: StoredRow): StoredVariable {
  return { value: row.unset ? undefined : deepFreeze(row.value), version: Number(row.version) };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const item of Object.values(value)) deepFreeze(item);
    Object.freeze(value);
  }
  return value;
}

/** Carries what a unit's work threw past the engine-failure wrapping, to be rethrown untouched once rolled back. */
class UnitFailure extends Error {
  constructor(readonly error: unknown) {
    super('the unit of work failed');
  }
}

function storeError(message: string, cause: unknown): HeraldError {
  const detail = cause instanceof Error ? `: ${cause.message}` : '';
  return new HeraldError('HERALD_STORE', `${message}${detail}`, { cause });
}
