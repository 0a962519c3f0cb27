import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { HeraldError } from '../core/errors.js';
import { checkout, clientBeside } from './pool.js';

/** A transaction on a connection of its own: {@link inTransaction} hands one to its work. @internal */
export interface PgTransaction {
  readonly client: pg.PoolClient;
  /**
   * Sends BEGIN (with `mode`, such as `ISOLATION LEVEL SERIALIZABLE`) and
   * then `statements`, in one round trip; returns the results of `statements`.
   * Notes the transaction's id, so that a lost COMMIT reply can be resolved.
   */
  begin(mode?: string, statements?: string, identify?: boolean): Promise<pg.QueryResult[]>;
  /** Notes the transaction's id and backend pid, when `statements` of {@link begin} read them (`identify` false). */
  identify(identity: { xid: string; pid: number }): void;
  /** Throws if the connection was lost while no query was in flight (nothing can have committed). */
  assertConnected(): void;
  /**
   * Sends `statements` and COMMIT in one round trip; if one fails, the rest
   * is skipped and nothing commits. When the reply never comes (the
   * connection died), asks the server what became of the transaction:
   * returns if it committed, throws `HERALD_STORE` if it did not, and
   * `HERALD_IN_DOUBT` if the server could not tell within `resolveWithinMs`.
   */
  commit(statements?: readonly string[]): Promise<void>;
}

/** How long a COMMIT whose reply was lost is looked into, by default. */
export const RESOLVE_WITHIN_MS = 10_000;

/**
 * Runs `work` on a client of `pool` that it owns for one transaction; on any
 * failure this rolls back. A connection that dies while no query is in
 * flight is caught here (it would otherwise crash the process) and
 * `assertConnected` throws it. A client that failed is released as broken,
 * so the pool never hands it out again. @internal
 */
export async function inTransaction<R>(pool: pg.Pool, work: (tx: PgTransaction) => Promise<R>, resolveWithinMs = RESOLVE_WITHIN_MS): Promise<R> {
  let broken: Error | undefined;
  const onError = (error: Error): void => void (broken ??= error);
  const client = await checkout(pool, onError);
  let identity: { xid: string; pid: number } | undefined;
  const assertConnected = (): void => {
    if (broken !== undefined) throw new HeraldError('HERALD_STORE', `the connection was lost during the transaction: ${broken.message}`, { cause: broken });
  };
  const tx: PgTransaction = {
    client,
    assertConnected,
    async begin(mode = '', statements, identify = true) {
      const parts = [`BEGIN ${mode}`];
      if (identify) parts.push('SELECT pg_current_xact_id()::text AS xid, pg_backend_pid() AS pid');
      if (statements !== undefined) parts.push(statements);
      const results = (await client.query(parts.join('; '))) as unknown as pg.QueryResult[];
      if (identify) identity = results[1]!.rows[0] as { xid: string; pid: number };
      return results.slice(identify ? 2 : 1);
    },
    identify(given) {
      identity = given;
    },
    async commit(statements = []) {
      assertConnected();
      const sent = client.query([...statements, 'COMMIT'].join(';\n'));
      // A reply that never comes (a connection that hangs open) is looked into like a lost one, after `resolveWithinMs`.
      let timer: NodeJS.Timeout | undefined;
      const silence = new Promise<Error>((resolve) => {
        timer = setTimeout(() => resolve(new Error(`no reply to COMMIT within ${resolveWithinMs} ms`)), resolveWithinMs);
      });
      const failure = await Promise.race([sent.then(() => undefined, (error: unknown) => (error instanceof Error ? error : new Error(`COMMIT failed: ${String(error)}`))), silence]);
      clearTimeout(timer);
      if (failure === undefined) return;
      void sent.catch(() => {});
      // The server refused a statement or the COMMIT itself: nothing committed.
      if (failure instanceof pg.DatabaseError || identity === undefined) throw failure;
      broken ??= failure;
      const outcome = await resolveOutcome(pool, identity, resolveWithinMs);
      if (outcome === 'committed') return;
      if (outcome === 'aborted') {
        throw new HeraldError('HERALD_STORE', `the connection was lost before the COMMIT took effect, and the server rolled the transaction back: ${describe(failure)}`, { cause: failure });
      }
      throw new HeraldError(
        'HERALD_IN_DOUBT',
        `the connection was lost after the COMMIT was sent, and the server could not say within ${resolveWithinMs} ms whether transaction ${identity.xid} committed; it may have, and it was not announced here (with a PostgreSQL backplane, other nodes are told if it did): ${describe(failure)}`,
        { cause: failure },
      );
    },
  };
  let failed = false;
  try {
    return await work(tx);
  } catch (error) {
    failed = true;
    if (broken === undefined) await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.off('error', onError);
    client.release(failed || broken !== undefined ? true : undefined);
  }
}

/**
 * What became of transaction `xid` of the backend `pid` whose connection was
 * lost: asked on a connection of its own, again and again until `withinMs`
 * has passed. A backend still holding the transaction open (it has not
 * noticed its client is gone) is ended first, so the answer is final: a
 * COMMIT it was executing completes, one it never received is rolled back.
 */
async function resolveOutcome(pool: pg.Pool, { xid, pid }: { xid: string; pid: number }, withinMs: number): Promise<'committed' | 'aborted' | undefined> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    // Every wait of the check is bounded: connecting, and each query (a server that accepts and never answers).
    const left = Math.max(1, deadline - Date.now());
    const client = clientBeside(pool, { connectionTimeoutMillis: left, query_timeout: left });
    client.on('error', () => {});
    try {
      await client.connect();
      for (;;) {
        const { rows } = await client.query<{ status: string | null }>('SELECT pg_xact_status($1::xid8) AS status', [xid]);
        const status = rows[0]!.status;
        if (status === 'committed' || status === 'aborted') return status;
        if (status === null) return undefined; // too old for the server to remember
        // Still in progress: end its backend, if that backend is still the one holding it (a pid can be reused).
        await client.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE pid = $1 AND backend_xid::text = (($2::text)::numeric % 4294967296)::text`,
          [pid, xid],
        ).catch(() => {}); // without the right to, wait for the server to notice
        if (Date.now() + 50 >= deadline) return undefined;
        await sleep(50);
      }
    } catch {
      if (Date.now() + 200 >= deadline) return undefined;
      await sleep(200);
    } finally {
      void client.end().catch(() => {});
    }
  }
  return undefined;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
