import type pg from 'pg';
import type { PendingNotifications } from '../delivery/pending.js';
import { InvalidArgumentError } from '../core/errors.js';
import type { ObserverManager } from '../hub/observer-manager.js';
import { assertCallback, copyOptions } from '../core/assert.js';
import { stageOutbox } from '../cluster/postgres.js';
import { inTransaction } from './pg-transaction.js';

/** Options of {@link withTransaction}. */
export interface WithTransactionOptions {
  /** @default 'read committed' (the server's default) */
  readonly isolationLevel?: 'read committed' | 'repeatable read' | 'serializable';
}

const ISOLATION_LEVELS = ['read committed', 'repeatable read', 'serializable'] as const;

/**
 * Runs your own PostgreSQL transaction and announces its changes only after
 * COMMIT has succeeded. `fn` does its SQL on `client` and queues changes on
 * `pending` (`pending.notify(key, old, new, meta)`); if `fn` throws, or the
 * COMMIT fails (a deferred constraint, a serialization failure, a lost
 * connection), the transaction is rolled back, the changes are discarded and
 * the error is rethrown: nothing is ever announced that did not commit.
 *
 * @example
 * ```ts
 * await withTransaction(pool, hub, async (client, pending) => {
 *   const { rows } = await client.query('UPDATE agents SET name = $2 WHERE id = $1 RETURNING (SELECT name FROM agents WHERE id = $1) AS old', [id, name]);
 *   pending.notify(`agents/${id}`, rows[0].old, name);
 * });
 * ```
 */
export async function withTransaction<R>(
  pool: pg.Pool,
  hub: ObserverManager,
  fn: (client: pg.PoolClient, pending: PendingNotifications) => Promise<R> | R,
  given: WithTransactionOptions = {},
): Promise<R> {
  const options = copyOptions(given, 'options') ?? {};
  if (typeof (pool as { connect?: unknown } | undefined)?.connect !== 'function') {
    throw InvalidArgumentError.expected('HERALD_INVALID_ARGUMENT', 'pool', 'a pg Pool', pool);
  }
  if (typeof hub?.defer !== 'function') throw InvalidArgumentError.expected('HERALD_INVALID_ARGUMENT', 'hub', 'an ObserverManager', hub);
  assertCallback(fn, 'fn');
  const level = options.isolationLevel ?? 'read committed';
  if (!ISOLATION_LEVELS.includes(level)) {
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.isolationLevel', ISOLATION_LEVELS.join(', '), level);
  }
  const pending = hub.defer();
  try {
    return await inTransaction(pool, async (client, assertConnected) => {
      await client.query(`BEGIN ISOLATION LEVEL ${level.toUpperCase()}`);
      const result = await fn(client, pending);
      // On a hub with a PostgreSQL backplane, the announcement joins this transaction's outbox.
      await stageOutbox(hub, client, pending);
      assertConnected();
      await client.query('COMMIT');
      pending.commit();
      return result;
    });
  } catch (error) {
    pending.discard();
    throw error;
  }
}
