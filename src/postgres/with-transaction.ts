import type pg from 'pg';
import type { PendingNotifications } from '../delivery/pending.js';
import { InvalidArgumentError } from '../core/errors.js';
import type { ObserverManager } from '../hub/observer-manager.js';
import { assertCallback, copyOptions, integerOption, MAX_TIMER_MS } from '../core/assert.js';
import { stageOutbox } from './backplane.js';
import { AnnouncementOrder, type Ticket } from '../store/announcement-order.js';
import { inTransaction, RESOLVE_WITHIN_MS } from './transaction.js';

/**
 * Per hub, the line its `withTransaction` calls announce in: a place is taken
 * just before COMMIT is sent, so a transaction whose reply comes late (or is
 * lost and looked into) never announces after one that committed after it.
 * Two transactions that write the same row commit in that order, since the
 * second waits for the first's row lock before it can send its COMMIT.
 */
const lines = new WeakMap<ObserverManager, AnnouncementOrder>();

/** Options of {@link withTransaction}. */
export interface WithTransactionOptions {
  /** @default 'read committed' (the server's default) */
  readonly isolationLevel?: 'read committed' | 'repeatable read' | 'serializable';
  /**
   * When the connection dies after the COMMIT was sent, how long to ask the
   * server whether it committed (then the changes are announced and the call
   * returns) before rejecting with `HERALD_IN_DOUBT`. @default 10000
   */
  readonly commitCheckMs?: number;
}

const ISOLATION_LEVELS = ['read committed', 'repeatable read', 'serializable'] as const;

/**
 * Runs your own PostgreSQL transaction and announces its changes only after
 * COMMIT has succeeded. `fn` does its SQL on `client` and queues changes on
 * `pending` (`pending.notify(key, old, new, meta)`); if `fn` throws, or the
 * COMMIT fails (a deferred constraint, a serialization failure), the
 * transaction is rolled back, the changes are discarded and the error is
 * rethrown: nothing is ever announced that did not commit. A connection lost
 * after the COMMIT was sent is looked into: if the transaction committed
 * after all, it is announced and the call returns.
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
  const commitCheckMs = integerOption(options.commitCheckMs, 'options.commitCheckMs', RESOLVE_WITHIN_MS, 1, MAX_TIMER_MS);
  const pending = hub.defer();
  let line = lines.get(hub);
  if (line === undefined) lines.set(hub, (line = new AnnouncementOrder()));
  let ticket: Ticket | undefined;
  try {
    const result = await inTransaction(pool, async (transaction) => {
      await transaction.begin(`ISOLATION LEVEL ${level.toUpperCase()}`);
      const result = await fn(transaction.client, pending);
      // On a hub with a PostgreSQL backplane, the announcement joins this transaction's outbox.
      await stageOutbox(hub, transaction.client, pending);
      ticket = line.enter('');
      await transaction.commit();
      return result;
    }, commitCheckMs);
    const turn = ticket === undefined ? undefined : line.turn(ticket);
    if (turn !== undefined) await turn;
    // Committed: announced, unless the hub was closed meanwhile (then nobody is left to tell).
    if (hub.closed) pending.discard();
    else pending.commit();
    return result;
  } catch (error) {
    pending.discard();
    throw error;
  } finally {
    if (ticket !== undefined) line.leave(ticket);
  }
}
