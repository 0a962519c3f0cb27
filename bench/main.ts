/**
 * `npm run bench [-- --quick] [-- filter]`: herald beside every peer, in one
 * process (but for the server fan-out, whose servers and clients run in child
 * processes of their own: bench/server.ts), in interleaved shuffled rounds; medians, ratios to the floor and
 * to the peers, and herald's targets checked. A full run writes
 * bench/out/results.json and a chart per scenario in bench/out/charts/ (a
 * quick run: results.quick.json and charts.quick/); a filtered run writes
 * nothing. No tracked file is touched: `npm run bench:publish` does that.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { setImmediate as nextTask } from 'node:timers/promises';
import { writeCharts } from './chart.js';
import { clusterBench, engineProblem, engineUrls } from './cluster.js';
import { ALL, floor, herald, makeObservers, PEERS, readSink, type Contender, type Fn, type Instance } from './contenders.js';
import {
  CHURN, COALESCE_OVERLOAD, clusterName, consoleReport, cycleGrowthName, evaluateTargets, fanoutName, FIXED_COSTS, grpcFanoutName, idleHeapName, MEMORY_STORE, MIXED_HUB,
  NO_OBSERVERS, postgresStoreName, removalName, serverFanoutName, type Kinds, type Result, type ResultsFile, type ServerResults, type Settings,
} from './report.js';
import { ObserverManager } from '../src/index.js';
import { serverBench } from './server.js';
import { memoryStoreBench, postgresStoreBench, type StoreResults } from './stores.js';
import { shuffle } from './shuffle.js';

const started = Date.now();
const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const FILTER = args.find((a) => !a.startsWith('--'));
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc (npm run bench does)');

/** The commit measured, read before anything runs; `dirty` when tracked files differ from it. */
function commitOf(): ResultsFile['commit'] {
  try {
    const git = (...gitArgs: string[]): string => execFileSync('git', gitArgs, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return { sha: git('rev-parse', 'HEAD'), dirty: git('status', '--porcelain', '--untracked-files=no') !== '' };
  } catch {
    return { sha: 'unknown (not a git checkout)', dirty: false };
  }
}
const commit = commitOf();

/** One sample: `before` is not timed, `run` is; `ops` is how many operations `run` did. */
interface Sample {
  readonly ops: number;
  before?(): void;
  run(): void | Promise<void>;
}

const results: Record<string, Record<string, Result>> = {};
const storeResults: StoreResults = {};
const serverResults: ServerResults = {};
const notes: string[] = [];

let sectionStart = Date.now();
function progress(text: string): void {
  const at = `[${((Date.now() - started) / 1000).toFixed(0).padStart(3)} s]`;
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${at} ${text}`);
  else if (!text.includes('round')) {
    process.stderr.write(`${at} ${text} (previous section ${((Date.now() - sectionStart) / 1000).toFixed(1)} s)\n`);
    sectionStart = Date.now();
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function sampleOnce(sample: Sample): Promise<number> {
  sample.before?.();
  const t0 = process.hrtime.bigint();
  const done = sample.run();
  if (done !== undefined) await done;
  return Number(process.hrtime.bigint() - t0) / sample.ops;
}

/**
 * Times every contender in shuffled order each round; records the median ns
 * per op. Each contender is first warmed up on its own: `warmup` samples, and
 * more (up to 12) until 100 ms have gone, so that no one is timed while the
 * JIT is still settling.
 */
async function timed(name: string, contenders: readonly Contender[], make: (c: Contender) => Sample, rounds: number, warmup = 3): Promise<void> {
  if (FILTER !== undefined && !name.includes(FILTER)) return;
  progress(`${name}`);
  const samples = new Map(contenders.map((c) => [c, make(c)]));
  const times = new Map<Contender, number[]>(contenders.map((c) => [c, []]));
  for (const c of shuffle(contenders)) {
    const until = Date.now() + (QUICK ? 20 : 100);
    for (let i = 0; i < 12 && (i < warmup || Date.now() < until); i++) await sampleOnce(samples.get(c)!);
  }
  for (let round = 0; round < rounds; round++) {
    progress(`${name}: round ${round + 1}/${rounds}`);
    for (const c of shuffle(contenders)) times.get(c)!.push(await sampleOnce(samples.get(c)!));
  }
  results[name] = Object.fromEntries(contenders.map((c) => [c.name, { unit: 'ns/op', median: median(times.get(c)!), samples: rounds }]));
}

/** An instance with `count` observers of `key`, and the handles to remove them. */
function populate(c: Contender, key: string, fns: readonly Fn[]): { instance: Instance; handles: unknown[] } {
  const instance = c.create();
  const handles = fns.map((fn) => instance.on(key, fn));
  return { instance, handles };
}

let value = 0;
function emitBatch(instance: Instance, key: string, batch: number): void | Promise<void> {
  for (let i = 0; i < batch; i++) instance.emit(key, value, ++value);
  return instance.settle?.();
}

/**
 * One notify to `observers` observers of a key. With `pattern`, one more
 * observer of every key matching `fan/*` (herald's observePattern); the
 * peers have no wildcards, so theirs is one more listener on the key itself.
 */
async function fanout(observers: number, kinds: Kinds, batch: number, rounds: number, pattern = false): Promise<void> {
  const fns = makeObservers(observers + (pattern ? 1 : 0), kinds === 'one' ? 1 : 8);
  await timed(fanoutName(observers, kinds, pattern), ALL, (c) => {
    const { instance } = populate(c, 'fan/k', fns.slice(0, observers));
    if (pattern) {
      const last = fns[observers]!;
      if (instance.onPattern !== undefined) instance.onPattern('fan/*', last);
      else instance.on('fan/k', last);
    }
    return { ops: batch, run: () => emitBatch(instance, 'fan/k', batch) };
  }, rounds);
}

async function noObservers(rounds: number): Promise<void> {
  const fns = makeObservers(1, 1);
  await timed(NO_OBSERVERS, ALL, (c) => {
    const { instance } = populate(c, 'someone-else', fns);
    return { ops: 10_000, run: () => emitBatch(instance, 'nobody', 10_000) };
  }, rounds);
}

/** Keys with 1, 10, 100 and 1000 observers; one op notifies every key once. */
async function mixedHub(rounds: number): Promise<void> {
  const groups: [keys: number, observers: number][] = [[100, 1], [100, 10], [10, 100], [2, 1000]];
  const keys = shuffle(groups.flatMap(([count, observers]) => Array.from({ length: count }, (_, i) => ({ key: `mixed/${observers}/${i}`, observers }))));
  const fnsByKey = new Map(keys.map(({ key, observers }) => [key, makeObservers(observers, 8)]));
  await timed(MIXED_HUB, ALL, (c) => {
    const instance = c.create();
    for (const [key, fns] of fnsByKey) for (const fn of fns) instance.on(key, fn);
    return {
      ops: 1,
      run: () => {
        for (const { key } of keys) instance.emit(key, value, ++value);
        return instance.settle?.();
      },
    };
  }, rounds);
}

/** Unsubscribe the oldest, observe a new one, notify: at a steady 1000 observers. */
async function churn(batch: number, rounds: number): Promise<void> {
  await timed(CHURN, ALL, (c) => {
    const fns = makeObservers(1000, 1);
    const { instance, handles } = populate(c, 'churn', fns);
    const live = fns.map((fn, i) => ({ fn, handle: handles[i] }));
    let next = 0;
    return {
      ops: batch,
      run: () => {
        for (let i = 0; i < batch; i++) {
          const oldest = live[next % live.length]!;
          instance.off('churn', oldest.fn, oldest.handle);
          oldest.handle = instance.on('churn', oldest.fn);
          next++;
          instance.emit('churn', value, ++value);
        }
        return instance.settle?.();
      },
    };
  }, rounds);
}

/**
 * The overload `coalesce` exists for: an observer stuck on a promise, its
 * queue full of one change of each of 10 000 keys, and one more change of
 * each arriving, merged into that key's pending change. Herald alone: the
 * peers have no queues.
 */
async function coalesceOverload(rounds: number): Promise<void> {
  const keys = 10_000;
  await timed(COALESCE_OVERLOAD, [herald], () => {
    const hub = new ObserverManager({ sweepIntervalMs: 0, callbackTimeoutMs: Infinity });
    hub.observePattern('co/*', () => new Promise<void>(() => {}), { queue: { limit: keys, overflow: 'coalesce' } });
    for (let i = 0; i <= keys; i++) hub.notify(`co/${i % keys}`, value, ++value);
    return {
      ops: keys,
      run: async () => {
        for (let i = 0; i < keys; i++) hub.notify(`co/${i}`, value, ++value);
        await nextTask(); // the dispatch runs on the microtask queue: by the next task every change is merged
      },
    };
  }, rounds);
}

/** Time to remove every observer of one key in random order, by its handle; recorded per whole removal (ns). The floor is O(1) per removal. */
async function removeAll(observers: number, contenders: readonly Contender[], rounds: number): Promise<void> {
  const fns = makeObservers(observers, 1);
  const order = shuffle(fns.map((_, i) => i));
  await timed(removalName(observers), contenders, (c) => {
    let state: { instance: Instance; handles: unknown[] } | undefined;
    return {
      ops: 1,
      before: () => {
        state = undefined;
        state = populate(c, 'removal', fns);
        gc!(); // neither the previous sample's garbage nor this one's set-up is collected on the clock
      },
      run: () => {
        const { instance, handles } = state!;
        for (const i of order) instance.off('removal', fns[i]!, handles[i]);
      },
    };
  }, rounds, 1);
}

async function settledHeap(): Promise<number> {
  for (let i = 0; i < 2; i++) {
    await nextTask();
    gc!();
  }
  return process.memoryUsage().heapUsed;
}

/**
 * Heap retained by `observers` idle observers of one key, handles included
 * (the closures are made before the baseline). Its own function, so that no
 * earlier measurement's objects linger in a suspended frame.
 */
async function retainedBy(c: Contender, observers: number): Promise<number> {
  const fns = makeObservers(observers, 1);
  const handles: unknown[] = new Array(observers).fill(undefined);
  const before = await settledHeap();
  const instance = c.create();
  for (let i = 0; i < observers; i++) handles[i] = instance.on('idle', fns[i]!);
  const after = await settledHeap();
  if (handles.length !== fns.length || instance === undefined) throw new Error('unreachable: keeps both alive until here');
  return (after - before) / observers;
}

/** Retained heap per idle observer of one key, its handle included (the closure itself excluded). */
async function idleHeap(observers: number, rounds: number): Promise<void> {
  const name = idleHeapName(observers);
  if (FILTER !== undefined && !name.includes(FILTER)) return;
  const bytes = new Map<Contender, number[]>(ALL.map((c) => [c, []]));
  for (let round = 0; round < rounds; round++) {
    progress(`${name}: round ${round + 1}/${rounds}`);
    for (const c of shuffle(ALL)) bytes.get(c)!.push(await retainedBy(c, observers));
  }
  results[name] = Object.fromEntries(ALL.map((c) => [c.name, { unit: 'bytes', median: median(bytes.get(c)!), samples: rounds }]));
}

/** Heap growth after `cycles` observe/unsubscribe cycles, each on a fresh key; in its own frame, as above. */
async function grownBy(c: Contender, cycles: number): Promise<number> {
  const instance = c.create();
  const fn = makeObservers(1, 1)[0]!;
  for (let i = 0; i < 10_000; i++) instance.off(`warm/${i}`, fn, instance.on(`warm/${i}`, fn));
  const before = await settledHeap();
  for (let i = 0; i < cycles; i++) {
    const key = `cycle/${i}`;
    instance.off(key, fn, instance.on(key, fn));
  }
  const after = await settledHeap();
  if (instance === undefined) throw new Error('unreachable: keeps the instance alive until here');
  return after - before;
}

/** Heap growth per cycle: `cycles` for herald and the floor (the target), `peerCycles` for the peers (some leak hundreds of MB). */
async function cycleGrowth(cycles: number, peerCycles: number): Promise<void> {
  const name = cycleGrowthName(cycles, peerCycles);
  if (FILTER !== undefined && !name.includes(FILTER)) return;
  const growth: Record<string, Result> = {};
  for (const c of shuffle(ALL)) {
    progress(`${name}: ${c.name}`);
    const n = c === herald || c === floor ? cycles : peerCycles;
    growth[c.name] = { unit: 'bytes', median: (await grownBy(c, n)) / n, samples: 1 };
  }
  results[name] = growth;
}

/**
 * What every accepted change costs before any observer is called: the clock
 * read for `at` and the freeze. Measured here so that the README's account
 * of herald's fixed cost per notify is reproducible.
 */
function fixedCosts(rounds: number): void {
  const name = FIXED_COSTS;
  if (FILTER !== undefined && !name.includes(FILTER)) return;
  progress(name);
  const meta = Object.freeze({});
  const n = 200_000;
  let keep: unknown;
  const parts: Record<string, () => void> = {
    'change object literal': () => { for (let i = 0; i < n; i++) keep = { key: 'k', oldValue: i, newValue: i + 1, meta, seq: i, at: 0 }; },
    'Object.freeze(change literal)': () => { for (let i = 0; i < n; i++) keep = Object.freeze({ key: 'k', oldValue: i, newValue: i + 1, meta, seq: i, at: 0 }); },
    'Date.now()': () => { for (let i = 0; i < n; i++) keep = Date.now(); },
    'empty loop': () => { for (let i = 0; i < n; i++) keep = i; },
  };
  const times = new Map<string, number[]>(Object.keys(parts).map((k) => [k, []]));
  for (let round = -2; round < rounds; round++) {
    for (const part of shuffle(Object.keys(parts))) {
      const t0 = process.hrtime.bigint();
      parts[part]!();
      if (round >= 0) times.get(part)!.push(Number(process.hrtime.bigint() - t0) / n);
    }
  }
  if (keep === Symbol.for('never')) throw new Error('unreachable');
  results[name] = Object.fromEntries([...times].map(([part, t]) => [part, { unit: 'ns/op', median: median(t), samples: rounds }]));
}

async function stores(): Promise<void> {
  if (FILTER === undefined || MEMORY_STORE.includes(FILTER)) {
    progress(MEMORY_STORE);
    storeResults[MEMORY_STORE] = await memoryStoreBench(settings.memoryStore.ops, settings.memoryStore.rounds);
  }
  const url = engineUrls.postgres;
  for (const writers of [1, 8]) {
    const name = postgresStoreName(writers);
    if (FILTER !== undefined && !name.includes(FILTER)) continue;
    const problem = await engineProblem('postgres');
    if (problem !== undefined) {
      notes.push(`${name}: not run, PostgreSQL is unreachable at ${url} (${problem})`);
      continue;
    }
    progress(name);
    storeResults[name] = await postgresStoreBench(url, writers, settings.postgresStore.durationMs, settings.postgresStore.rounds);
  }
}

async function clusters(): Promise<void> {
  for (const engine of ['redis', 'nats', 'postgres'] as const) {
    const name = clusterName(engine);
    if (FILTER !== undefined && !name.includes(FILTER)) continue;
    const problem = await engineProblem(engine);
    if (problem !== undefined) {
      notes.push(`${name}: not run, ${engine} is unreachable at ${engineUrls[engine]} (${problem})`);
      continue;
    }
    progress(name);
    const { messages, latencySamples, rounds } = settings.cluster;
    storeResults[name] = await clusterBench(engine, messages[engine]!, latencySamples, rounds);
  }
}

/**
 * herald/server's watchers against a bare ws broadcast and socket.io, then its
 * gRPC Watch streams against a bare grpc-js server; each side in processes of
 * its own (bench/server.ts).
 */
async function servers(): Promise<void> {
  const server = settings.server!;
  for (const scenario of ['ws', 'grpc'] as const) {
    const name = scenario === 'ws' ? serverFanoutName(server.watchers) : grpcFanoutName(server.grpc!.streams);
    if (FILTER !== undefined && !name.includes(FILTER)) continue;
    progress(name);
    try {
      const outcome = await serverBench(scenario, server, progress);
      serverResults[name] = outcome.figures;
      notes.push(...outcome.notes);
    } catch (error) {
      // Its processes are stopped by now; the rest of the run still counts.
      notes.push(`${name}: failed, no figures (${(error as Error).message.split('\n')[0]})`);
      process.exitCode = 1;
    }
  }
}

// ---- main ----

const settings: Settings = {
  rounds: QUICK ? 3 : 21,
  removalRounds: QUICK ? 3 : 7,
  idleHeapRounds: QUICK ? 1 : 3,
  memoryStore: { ops: QUICK ? 500 : 5000, rounds: QUICK ? 1 : 5 },
  postgresStore: { durationMs: QUICK ? 300 : 2000, rounds: QUICK ? 1 : 3 },
  cluster: {
    messages: QUICK ? { redis: 2000, nats: 2000, postgres: 500 } : { redis: 20_000, nats: 20_000, postgres: 5000 },
    latencySamples: QUICK ? 100 : 1000,
    rounds: QUICK ? 2 : 5,
  },
  server: {
    watchers: QUICK ? 2000 : 10_000,
    clientProcesses: QUICK ? 1 : 2,
    latencySets: 3,
    windowMs: QUICK ? 500 : 2500,
    rounds: QUICK ? 2 : 5,
    grpc: { streams: QUICK ? 1000 : 5000, streamsPerConnection: 100 },
  },
};
const R = settings.rounds;
const CYCLES = QUICK ? 100_000 : 1_000_000;

fixedCosts(QUICK ? 3 : 15);
await fanout(1, 'one', 2000, R);
await noObservers(R);
for (const pattern of [false, true]) {
  for (const kinds of ['one', 'eight'] as const) {
    await fanout(1000, kinds, QUICK ? 5 : 20, R, pattern);
    await fanout(10_000, kinds, QUICK ? 1 : 4, R, pattern);
  }
}
await mixedHub(R);
await churn(QUICK ? 50 : 200, R);
await coalesceOverload(QUICK ? 3 : 11);
await removeAll(10_000, QUICK ? [herald, floor] : [herald, floor, ...PEERS], settings.removalRounds);
await removeAll(100_000, [herald, floor], settings.removalRounds);
await idleHeap(QUICK ? 20_000 : 50_000, settings.idleHeapRounds);
await cycleGrowth(CYCLES, QUICK ? 20_000 : 200_000);
await stores();
await clusters();
await servers();
progress('');
if (QUICK) notes.push('quick run: fewer rounds, removal peers skipped, 100 000 cycles instead of 1 000 000; figures are a smoke test, not a measurement');
if (!QUICK && results[removalName(100_000)] !== undefined) {
  notes.push('remove 100 000: peers not run (most search their listeners on each removal: minutes)');
}

const file: ResultsFile = {
  run: {
    date: new Date().toISOString(),
    seconds: Math.round((Date.now() - started) / 1000),
    quick: QUICK,
    filter: FILTER ?? null,
    command: `npm run bench${args.length > 0 ? ` -- ${args.join(' ')}` : ''}`,
  },
  commit,
  machine: {
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
    cores: os.cpus().length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.platform()} ${os.arch()}`,
  },
  settings,
  results,
  stores: storeResults,
  servers: serverResults,
  targets: evaluateTargets(results, storeResults, CYCLES, serverResults),
  notes,
};
console.log(consoleReport(file));
console.log(`\n(${file.run.seconds} s; sink ${readSink() & 0xff})`);
if (FILTER === undefined) {
  const out = fileURLToPath(new URL('./out/', import.meta.url));
  mkdirSync(out, { recursive: true });
  const resultsPath = `${out}${QUICK ? 'results.quick.json' : 'results.json'}`;
  writeFileSync(resultsPath, `${JSON.stringify(file, null, 2)}\n`);
  const charts = writeCharts(results, `${out}${QUICK ? 'charts.quick' : 'charts'}`);
  console.log(`wrote ${resultsPath} and ${charts} charts${QUICK ? '' : '; `npm run bench:publish` puts them in the README'}`);
}
