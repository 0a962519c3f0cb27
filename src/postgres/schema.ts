import type pg from 'pg';
import { checkout } from './pool.js';

/**
 * Every table herald keeps in PostgreSQL, in one schema: the session store's
 * (sessions, variables, tombstones) and the backplane's outbox. Each part is
 * created on first use, in one transaction; concurrent first uses, from any
 * process, wait on one advisory lock. @internal
 */
export class PostgresSchema {
  readonly sessions: string;
  readonly variables: string;
  /** A removed variable's last version: a new variable of that name goes on from it, so a version never goes backwards. */
  readonly tombstones: string;
  /** One row per change sent to the other nodes; NOTIFY carries only its id. */
  readonly outbox: string;
  /** The outbox's one row of state: the highest id pruned, so that a reader behind it knows what it missed. */
  readonly outboxState: string;
  #store: Promise<void> | undefined;
  #outbox: Promise<void> | undefined;

  constructor(readonly name: string) {
    this.sessions = `"${name}".sessions`;
    this.variables = `"${name}".variables`;
    this.tombstones = `"${name}".variable_tombstones`;
    this.outbox = `"${name}".outbox`;
    this.outboxState = `"${name}".outbox_state`;
  }

  /** Creates the session store's tables once (again after a failed try). */
  ensureStore(pool: pg.Pool): Promise<void> {
    this.#store ??= createOnce(pool, this.name, [
      `CREATE TABLE IF NOT EXISTS ${this.sessions} (
        id text PRIMARY KEY,
        created_at bigint NOT NULL,
        expires_at bigint,
        meta jsonb
      )`,
      `CREATE TABLE IF NOT EXISTS ${this.variables} (
        session_id text NOT NULL REFERENCES ${this.sessions} (id) ON DELETE CASCADE,
        name text NOT NULL,
        value jsonb,
        version bigint NOT NULL,
        PRIMARY KEY (session_id, name)
      )`,
      `CREATE TABLE IF NOT EXISTS ${this.tombstones} (
        session_id text NOT NULL REFERENCES ${this.sessions} (id) ON DELETE CASCADE,
        name text NOT NULL,
        version bigint NOT NULL,
        PRIMARY KEY (session_id, name)
      )`,
      // The expiry sweep asks for sessions past their time: an index, not a scan of every session each second.
      `CREATE INDEX IF NOT EXISTS sessions_expires_at ON ${this.sessions} (expires_at) WHERE expires_at IS NOT NULL`,
    ]).catch((error: unknown) => {
      this.#store = undefined;
      throw error;
    });
    return this.#store;
  }

  /** Creates the backplane's outbox once (again after a failed try). */
  ensureOutbox(pool: pg.Pool): Promise<void> {
    this.#outbox ??= createOnce(pool, this.name, [
      `CREATE TABLE IF NOT EXISTS ${this.outbox} (
        id bigserial PRIMARY KEY,
        origin text NOT NULL,
        key text NOT NULL,
        payload bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now())`,
      `CREATE INDEX IF NOT EXISTS outbox_created_at ON ${this.outbox} (created_at)`,
      `CREATE TABLE IF NOT EXISTS ${this.outboxState} (
        id int PRIMARY KEY CHECK (id = 1),
        pruned_through bigint NOT NULL)`,
    ]).catch((error: unknown) => {
      this.#outbox = undefined;
      throw error;
    });
    return this.#outbox;
  }
}

async function createOnce(pool: pg.Pool, schema: string, ddl: readonly string[]): Promise<void> {
  // A connection lost meanwhile fails the next query; listening keeps it from crashing the process.
  const onError = (): void => {};
  const client = await checkout(pool, onError);
  let failed = false;
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`herald:${schema}`]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    for (const statement of ddl) await client.query(statement);
    await client.query('COMMIT');
  } catch (error) {
    failed = true;
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.off('error', onError);
    client.release(failed ? true : undefined);
  }
}
