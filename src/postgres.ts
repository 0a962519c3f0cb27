/**
 * herald/postgres: the durable session store and after-commit announcements
 * on PostgreSQL, through `pg` (an optional peer dependency).
 *
 * @example
 * ```ts
 * import { PostgresSessionStore, withTransaction } from 'herald/postgres';
 * const store = new PostgresSessionStore({ hub, connectionString: process.env.DATABASE_URL! });
 * ```
 * @module
 */
export { PostgresSessionStore, type PostgresStoreOptions } from './store/postgres-session-store.js';
export { withTransaction, type WithTransactionOptions } from './store/after-commit.js';
