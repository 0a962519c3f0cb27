/**
 * Across nodes: two hubs on one backplane (node A notifies, node B's
 * observer receives) beside the engine's own client doing raw
 * publish/subscribe of the same changes (a JSON of key, old and new value,
 * parsed on receipt) on two connections of its own. Both sides run in this
 * process, in interleaved rounds; medians of the rounds.
 *
 * Throughput: a burst of `messages` changes, from the first send until the
 * last one is received. Latency: one change at a time, from send to the
 * receiving callback.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import pg from 'pg';
import { ObserverManager, type Backplane } from '../src/index.js';
import { NatsBackplane } from '../src/nats.js';
import { PostgresBackplane } from '../src/postgres.js';
import { RedisBackplane } from '../src/redis.js';
import { probes, urls } from '../test/support/engines.js';
import { rawName, type Engine } from './report.js';
import { figures, medianOf, type StoreFigures } from './stores.js';

/** Where each engine is: `HERALD_REDIS_URL`, `HERALD_NATS_URL`, `HERALD_PG_URL`, or the local defaults. */
export const engineUrls: Record<Engine, string> = urls;

/** One way of sending a change from one connection to another. */
interface Side {
  /** Sends change number `i`. */
  send(i: number): void;
  /** Called with each change number received. */
  onReceive: (i: number) => void;
  close(): Promise<void>;
}

const namespace = `hbench${process.pid}`;
const key = 'bench/cluster/value';

function backplaneOf(engine: Engine): Backplane {
  const url = engineUrls[engine];
  if (engine === 'redis') return new RedisBackplane({ url, prefix: `${namespace}:` });
  if (engine === 'nats') return new NatsBackplane({ servers: url, prefix: namespace });
  return new PostgresBackplane({ connectionString: url, schema: namespace, pruneIntervalMs: 0 });
}

async function heraldSide(engine: Engine): Promise<Side> {
  const a = new ObserverManager({ backplane: backplaneOf(engine), sweepIntervalMs: 0 });
  const b = new ObserverManager({ backplane: backplaneOf(engine), sweepIntervalMs: 0 });
  const side: Side = {
    send: (i) => a.notify(key, i - 1, i),
    onReceive: () => {},
    close: async () => void (await Promise.all([a.close(), b.close()])),
  };
  // A burst must not overflow the observer's queue: nothing may be dropped from what is counted.
  b.observe<number>(key, (change) => side.onReceive(change.newValue), { queue: { limit: Infinity } });
  await Promise.all([a.backplane!.ready(), b.backplane!.ready()]);
  return side;
}

const payload = (i: number): string => JSON.stringify({ key, oldValue: i - 1, newValue: i });
const valueOf = (text: string): number => (JSON.parse(text) as { newValue: number }).newValue;

async function rawSide(engine: Engine): Promise<Side> {
  const url = engineUrls[engine];
  if (engine === 'redis') {
    // The same connection options as herald's publisher: auto-pipelining is the client's best for bursts.
    const publisher = new Redis(url, { enableAutoPipelining: true });
    const subscriber = new Redis(url);
    const channel = `${namespace}:raw`;
    const side: Side = {
      send: (i) => void publisher.publish(channel, payload(i)),
      onReceive: () => {},
      close: () => {
        publisher.disconnect();
        subscriber.disconnect();
        return Promise.resolve();
      },
    };
    subscriber.on('message', (_channel: string, message: string) => side.onReceive(valueOf(message)));
    await subscriber.subscribe(channel);
    return side;
  }
  if (engine === 'nats') {
    const publisher: NatsConnection = await connect({ servers: url });
    const subscriber: NatsConnection = await connect({ servers: url });
    const subject = `${namespace}.raw`;
    const side: Side = {
      send: (i) => publisher.publish(subject, payload(i)),
      onReceive: () => {},
      close: async () => void (await Promise.all([publisher.close(), subscriber.close()])),
    };
    subscriber.subscribe(subject, { callback: (_error, message) => side.onReceive(valueOf(message.string())) });
    await subscriber.flush();
    return side;
  }
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  const listener = new pg.Client({ connectionString: url });
  await listener.connect();
  const channel = `${namespace}_raw`;
  const side: Side = {
    send: (i) => void pool.query('SELECT pg_notify($1, $2)', [channel, payload(i)]),
    onReceive: () => {},
    close: async () => {
      await listener.end();
      await pool.end();
    },
  };
  listener.on('notification', (message) => side.onReceive(valueOf(message.payload!)));
  await listener.query(`LISTEN "${channel}"`);
  return side;
}

/** A burst of `messages`, then `samples` one at a time. */
async function measure(side: Side, messages: number, samples: number, base: number): Promise<StoreFigures> {
  let received = 0;
  let done!: () => void;
  const all = new Promise<void>((resolve) => (done = resolve));
  side.onReceive = () => {
    if (++received === messages) done();
  };
  const start = performance.now();
  for (let i = 1; i <= messages; i++) side.send(base + i);
  await all;
  const elapsed = performance.now() - start;
  const latencies: number[] = [];
  for (let i = 1; i <= samples; i++) {
    const arrived = new Promise<number>((resolve) => (side.onReceive = () => resolve(performance.now())));
    const t0 = performance.now();
    side.send(base + messages + i);
    latencies.push((await arrived) - t0);
  }
  return figures(messages, elapsed, latencies);
}

/** herald and the raw client of `engine`, side by side in alternating order. */
export async function clusterBench(engine: Engine, messages: number, samples: number, rounds: number): Promise<Record<string, StoreFigures>> {
  const herald = await heraldSide(engine);
  const raw = await rawSide(engine);
  try {
    // Warm-up, untimed: connections, JIT, the outbox table.
    await measure(herald, Math.min(messages, 500), 20, 0);
    await measure(raw, Math.min(messages, 500), 20, 0);
    const heraldRuns: StoreFigures[] = [];
    const rawRuns: StoreFigures[] = [];
    let base = 1_000_000;
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? [herald, raw] : [raw, herald];
      for (const side of order) {
        const result = await measure(side, messages, samples, (base += messages + samples + 1));
        (side === herald ? heraldRuns : rawRuns).push(result);
      }
    }
    return { herald: medianOf(heraldRuns), [rawName[engine]]: medianOf(rawRuns) };
  } finally {
    await herald.close();
    await raw.close();
    if (engine === 'postgres') {
      const pool = new pg.Pool({ connectionString: engineUrls.postgres, max: 1 });
      await pool.query(`DROP SCHEMA IF EXISTS "${namespace}" CASCADE`).catch(() => {});
      await pool.end();
    }
  }
}

/** Why `engine` cannot be used, or undefined when it can. */
export async function engineProblem(engine: Engine): Promise<string | undefined> {
  try {
    await probes[engine]();
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}
