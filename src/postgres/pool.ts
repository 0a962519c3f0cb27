import pg from 'pg';
import { InvalidArgumentError } from '../core/errors.js';

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

/** A connection of its own to where `pool` connects, outside the pool (so never waiting for one of its slots). @internal */
export function clientBeside(pool: pg.Pool, config: pg.ClientConfig = {}): pg.Client {
  return new pg.Client({ ...(pool.options as pg.ClientConfig), ...config });
}

/**
 * A client of `pool`, with `onError` listening from the tick it is handed
 * out: pg parses a connection's readiness and an error that came in the same
 * read (a backend terminated at once) in one go, so a listener added after
 * `await pool.connect()` would come too late, and the error would crash the
 * process. The caller removes `onError` before releasing the client. @internal
 */
export function checkout(pool: pg.Pool, onError: (error: Error) => void): Promise<pg.PoolClient> {
  return new Promise((resolve, reject) => {
    pool.connect((error, client) => {
      if (client === undefined || (error !== undefined && error !== null)) return reject(error ?? new Error('the pool handed out no client'));
      client.on('error', onError);
      resolve(client);
    });
  });
}
