import type pg from 'pg';
import { HeraldError } from '../errors.js';

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
