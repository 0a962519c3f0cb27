/**
 * herald/postgres: the durable session store, after-commit announcements and
 * a backplane (LISTEN/NOTIFY with an outbox) on PostgreSQL, through `pg` (an
 * optional peer dependency).
 *
 * @example
 * ```ts
 * import { PostgresSessionStore, withTransaction } from 'herald/postgres';
 * const store = new PostgresSessionStore({ hub, connectionString: process.env.DATABASE_URL! });
 * ```
 * @module
 */
export { PostgresSessionStore, type PostgresStoreOptions } from './postgres/session-store.js';
export { withTransaction, type WithTransactionOptions } from './postgres/with-transaction.js';
export { PostgresBackplane, type PostgresBackplaneOptions } from './postgres/backplane.js';
