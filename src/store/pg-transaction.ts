import pg from 'pg';
import { HeraldError, InvalidArgumentError } from '../core/errors.js';

/**
 * Runs `work` on a client of `pool` that it owns for one transaction: `work`
 * sends BEGIN and COMMIT itself (so it may combine them with other
 * statements); on any failure this rolls back. A connection that dies while
 * no query is in flight is reported as an event: it is caught here (it would
 * otherwise crash the process) and `assertConnected` throws it. A client that
 * failed is released as broken, so the pool never hands it out again.
 * @internal
 */
export async function inTransaction<R>(pool: pg.Pool, work: (client: pg.PoolClient, assertConnected: () => void) => Promise<R>): Promise<R> {
  const client = await pool.connect();
  let broken: Error | undefined;
  const onError = (error: Error): void => void (broken ??= error);
  client.on('error', onError);
  const assertConnected = (): void => {
    if (broken !== undefined) throw new HeraldError('HERALD_STORE', `the connection was lost during the transaction: ${broken.message}`, { cause: broken });
  };
  let failed = false;
  try {
    return await work(client, assertConnected);
  } catch (error) {
    failed = true;
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.off('error', onError);
    client.release(failed || broken !== undefined ? true : undefined);
  }
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Options that name where herald's PostgreSQL tables live and which pool reaches them. */
export type PoolSource = { readonly schema?: string } & (
  { readonly pool: pg.Pool; readonly connectionString?: never } | { readonly connectionString: string; readonly pool?: never }
);

/**
 * The schema (checked) and the pool of `options`: the caller's own `pool`, or
 * one made from `connectionString` that the caller then owns and ends. An
 * owned pool never keeps a process alive, and an idle client's lost
 * connection is reported to `onError` rather than crashing the process. @internal
 */
export function resolvePool(options: PoolSource, onError: (error: Error) => void, max?: number): { schema: string; pool: pg.Pool; owned: boolean } {
  const schema = options.schema ?? 'herald';
  if (typeof schema !== 'string' || !SCHEMA_NAME.test(schema)) {
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.schema', 'a lower-case SQL identifier such as "herald"', schema);
  }
  if (options.pool !== undefined) {
    if (typeof (options.pool as { connect?: unknown }).connect !== 'function') {
      throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.pool', 'a pg Pool', options.pool);
    }
    return { schema, pool: options.pool, owned: false };
  }
  const connectionString: unknown = (options as { connectionString?: unknown }).connectionString;
  if (typeof connectionString !== 'string' || connectionString.length === 0) {
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.connectionString', 'a PostgreSQL URL (or pass `pool`)', connectionString);
  }
  const pool = new pg.Pool({ connectionString, allowExitOnIdle: true, ...(max === undefined ? {} : { max }) });
  pool.on('error', onError);
  return { schema, pool, owned: true };
}

/**
 * Creates `schema` and runs `ddl` (idempotent statements) in one transaction;
 * concurrent first uses, from any process, wait on one advisory lock. @internal
 */
export async function createOnce(pool: pg.Pool, schema: string, ddl: readonly string[]): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`herald:${schema}`]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    for (const statement of ddl) await client.query(statement);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}
