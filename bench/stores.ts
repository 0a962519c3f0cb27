/**
 * The session stores beside their baselines: an in-memory `set` with one
 * watcher against a Map write plus a direct callback, and a PostgreSQL `set`
 * against raw `pg` doing the same UPDATE in a transaction.
 */
import diagnostics_channel from 'node:diagnostics_channel';
import pg from 'pg';
import { ObserverManager, SessionStore, type SessionStoreLike } from '../src/index.js';
import { PostgresSessionStore } from '../src/postgres.js';

export interface StoreFigures {
  /** Operations per second. */
  readonly opsPerSecond: number;
  /** Time from the write to the watcher's callback, in microseconds. */
  readonly p50Us: number;
  readonly p99Us: number;
}

export type StoreResults = Record<string, Record<string, StoreFigures>>;

function percentile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

export function figures(ops: number, elapsedMs: number, latenciesMs: number[]): StoreFigures {
  const sorted = latenciesMs.sort((a, b) => a - b);
  return { opsPerSecond: (ops / elapsedMs) * 1000, p50Us: percentile(sorted, 0.5) * 1000, p99Us: percentile(sorted, 0.99) * 1000 };
}

/** In memory: `set` → the watcher's callback, one at a time, against a Map write and a direct call. */
export async function memoryStoreBench(ops: number, rounds: number): Promise<Record<string, StoreFigures>> {
  const hub = new ObserverManager({ sweepIntervalMs: 0 });
  const store = new SessionStore({ hub, expiryCheckMs: 0 });
  await store.createSession('bench');
  let resolveSeen: (() => void) | undefined;
  let seenAt = 0;
  await store.watch('bench', 'n', () => {
    seenAt = performance.now();
    resolveSeen?.();
  });
  const heraldRuns: StoreFigures[] = [];
  const baselineRuns: StoreFigures[] = [];
  const map = new Map<string, number>();
  let baselineSeenAt = 0;
  const direct = (_change: { key: string; oldValue: unknown; newValue: unknown }): void => void (baselineSeenAt = performance.now());
  for (let round = 0; round < rounds; round++) {
    const latencies: number[] = [];
    const start = performance.now();
    for (let i = 0; i < ops; i++) {
      const seen = new Promise<void>((resolve) => (resolveSeen = resolve));
      const t0 = performance.now();
      await store.set('bench', 'n', round * ops + i);
      await seen;
      latencies.push(seenAt - t0);
    }
    heraldRuns.push(figures(ops, performance.now() - start, latencies));
    const baseLatencies: number[] = [];
    const baseStart = performance.now();
    for (let i = 0; i < ops; i++) {
      const t0 = performance.now();
      const oldValue = map.get('n');
      map.set('n', i);
      direct({ key: 'n', oldValue, newValue: i });
      baseLatencies.push(baselineSeenAt - t0);
    }
    baselineRuns.push(figures(ops, performance.now() - baseStart, baseLatencies));
  }
  await store.close();
  await hub.close();
  return { herald: medianOf(heraldRuns), 'Map write + direct callback': medianOf(baselineRuns) };
}

export function medianOf(runs: StoreFigures[]): StoreFigures {
  const pick = (f: (r: StoreFigures) => number): number => {
    const sorted = runs.map(f).sort((a, b) => a - b);
    return sorted[sorted.length >> 1]!;
  };
  return { opsPerSecond: pick((r) => r.opsPerSecond), p50Us: pick((r) => r.p50Us), p99Us: pick((r) => r.p99Us) };
}

/**
 * PostgreSQL: `writers` concurrent loops of `set` on their own variables for
 * `durationMs`, against raw `pg` doing BEGIN; UPDATE (with the version bump)
 * RETURNING; COMMIT on the same rows. Latency is commit → callback for the
 * store (the hub announces right after COMMIT) and COMMIT → resolved for raw pg.
 */
export async function postgresStoreBench(url: string, writers: number, durationMs: number, rounds: number): Promise<Record<string, StoreFigures>> {
  const schema = `herald_bench_${process.pid}`;
  const pool = new pg.Pool({ connectionString: url, max: writers + 2 });
  pool.on('error', () => {});
  const hub = new ObserverManager({ sweepIntervalMs: 0 });
  const store: SessionStoreLike = new PostgresSessionStore({ hub, pool, schema, expiryCheckMs: 0 });
  try {
    const sessions = Array.from({ length: writers }, (_, w) => `bench-${w}`);
    for (const id of sessions) await store.createSession(id);
    for (const id of sessions) await store.set(id, 'n', 0);
    // Commit → callback: the notify channel fires as the hub accepts the change, right after COMMIT.
    const acceptedAt = new Map<number, number>();
    const onNotify = (message: unknown): void => void acceptedAt.set((message as { change: { seq: number } }).change.seq, performance.now());
    diagnostics_channel.subscribe('herald:notify', onNotify);
    let latencies: number[] = [];
    hub.observePattern('session/*/n', (change) => {
      const at = acceptedAt.get(change.seq);
      if (at !== undefined) latencies.push(performance.now() - at);
      acceptedAt.delete(change.seq);
    });
    const heraldRuns: StoreFigures[] = [];
    const rawRuns: StoreFigures[] = [];
    let value = 1;
    const runFor = async (op: (w: number) => Promise<void>): Promise<{ ops: number; elapsed: number }> => {
      let ops = 0;
      const start = performance.now();
      const until = start + durationMs;
      await Promise.all(sessions.map(async (_, w) => {
        while (performance.now() < until) {
          await op(w);
          ops++;
        }
      }));
      return { ops, elapsed: performance.now() - start };
    };
    for (let round = 0; round < rounds; round++) {
      latencies = [];
      const h = await runFor(async (w) => void (await store.set(sessions[w]!, 'n', value++)));
      await hub.drain();
      heraldRuns.push(figures(h.ops, h.elapsed, latencies));
      const rawLatencies: number[] = [];
      const r = await runFor(async (w) => {
        const client = await pool.connect();
        try {
          await client.query('BEGIN');
          await client.query(
            `UPDATE "${schema}".variables SET value = $3::jsonb, version = version + 1 WHERE session_id = $1 AND name = $2 RETURNING version`,
            [sessions[w], 'n', JSON.stringify(value++)],
          );
          const t0 = performance.now();
          await client.query('COMMIT');
          rawLatencies.push(performance.now() - t0);
        } finally {
          client.release();
        }
      });
      rawRuns.push(figures(r.ops, r.elapsed, rawLatencies));
    }
    diagnostics_channel.unsubscribe('herald:notify', onNotify);
    return { herald: medianOf(heraldRuns), 'raw pg UPDATE in a transaction': medianOf(rawRuns) };
  } finally {
    await store.close();
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
    await pool.end();
    await hub.close();
  }
}
