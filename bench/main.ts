/**
 * `npm run bench [-- --quick] [-- filter]`: herald beside every peer, in one
 * process, in interleaved shuffled rounds; medians, ratios to the floor and
 * to the peers, and herald's targets checked. Writes bench/results.json.
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { setImmediate as nextTask } from 'node:timers/promises';
import { ALL, floor, herald, makeObservers, PEERS, readSink, type Contender, type Fn, type Instance } from './contenders.js';
import { clusterBench, engineProblem, engineUrls, rawName, type Engine } from './cluster.js';
import { memoryStoreBench, postgresStoreBench, type StoreResults } from './stores.js';

const started = Date.now();
const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const FILTER = args.find((a) => !a.startsWith('--'));
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc (npm run bench does)');

/** One sample: `before` is not timed, `run` is; `ops` is how many operations `run` did. */
interface Sample {
  readonly ops: number;
  before?(): void;
  run(): void | Promise<void>;
}

interface Result {
  readonly unit: 'ns/op' | 'bytes';
  readonly median: number;
  readonly samples: number;
}
const results: Record<string, Record<string, Result>> = {};
const storeResults: StoreResults = {};
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

function shuffle<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
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

async function fanout(observers: number, kinds: 1 | 8, batch: number, rounds: number, contenders: readonly Contender[] = ALL): Promise<void> {
  const fns = makeObservers(observers, kinds);
  await timed(`notify → all callbacks, ${observers} observers, ${kinds === 1 ? 'one' : 'eight'}-kind`, contenders, (c) => {
    const { instance } = populate(c, 'fan', fns);
    return { ops: batch, run: () => emitBatch(instance, 'fan', batch) };
  }, rounds);
}

async function noObservers(rounds: number): Promise<void> {
  const fns = makeObservers(1, 1);
  await timed('notify a key with no observers', ALL, (c) => {
    const { instance } = populate(c, 'someone-else', fns);
    return { ops: 10_000, run: () => emitBatch(instance, 'nobody', 10_000) };
  }, rounds);
}

/** Keys with 1, 10, 100 and 1000 observers; one op notifies every key once. */
async function mixedHub(rounds: number): Promise<void> {
  const groups: [keys: number, observers: number][] = [[100, 1], [100, 10], [10, 100], [2, 1000]];
  const keys = shuffle(groups.flatMap(([count, observers]) => Array.from({ length: count }, (_, i) => ({ key: `mixed/${observers}/${i}`, observers }))));
  const fnsByKey = new Map(keys.map(({ key, observers }) => [key, makeObservers(observers, 8)]));
  await timed('mixed hub: 212 keys with 1, 10, 100 and 1000 observers', ALL, (c) => {
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
  await timed('churn at 1000 observers: unsubscribe one, observe one, notify', ALL, (c) => {
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

/** Time to remove every observer of one key in random order; recorded per whole removal (ns). */
async function removeAll(observers: number, contenders: readonly Contender[], rounds: number): Promise<void> {
  const fns = makeObservers(observers, 1);
  const order = shuffle(fns.map((_, i) => i));
  await timed(`remove ${observers} observers of one key in random order (total)`, contenders, (c) => {
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
  const name = `retained heap per idle observer, handle included (${observers} observers)`;
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
  const name = `heap growth per observe/unsubscribe cycle on fresh keys (herald and floor ${cycles} cycles, peers ${peerCycles})`;
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
  const name = 'fixed costs of one change (ns each, not contenders)';
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
  const memoryName = 'in-memory SessionStore: set with one watcher';
  if (FILTER === undefined || memoryName.includes(FILTER)) {
    progress(memoryName);
    storeResults[memoryName] = await memoryStoreBench(QUICK ? 500 : 5000, QUICK ? 1 : 5);
  }
  const url = engineUrls.postgres;
  for (const writers of [1, 8]) {
    const name = `PostgresSessionStore: set, ${writers} concurrent writer${writers === 1 ? '' : 's'}`;
    if (FILTER !== undefined && !name.includes(FILTER)) continue;
    const problem = await engineProblem('postgres');
    if (problem !== undefined) {
      notes.push(`${name}: not run, PostgreSQL is unreachable at ${url} (${problem})`);
      continue;
    }
    progress(name);
    storeResults[name] = await postgresStoreBench(url, writers, QUICK ? 300 : 2000, QUICK ? 1 : 3);
  }
}

const clusterName = (engine: Engine): string => `across nodes on ${engine === 'postgres' ? 'PostgreSQL' : engine === 'redis' ? 'Redis' : 'NATS'}: notify on node A → callback on node B`;

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
    const messages = engine === 'postgres' ? (QUICK ? 500 : 5000) : (QUICK ? 2000 : 20_000);
    storeResults[name] = await clusterBench(engine, messages, QUICK ? 100 : 1000, QUICK ? 2 : 5);
  }
}

function storeReport(): string {
  const lines: string[] = [];
  for (const [scenario, byContender] of Object.entries(storeResults)) {
    const h = byContender['herald']!;
    lines.push(`\n### ${scenario}\n`, '| contender | operations/s | × herald | latency p50 | latency p99 |', '|---|---:|---:|---:|---:|');
    for (const [name, f] of Object.entries(byContender)) {
      lines.push(`| ${name === 'herald' ? '**herald**' : name} | ${f.opsPerSecond.toFixed(0)} | ${x(f.opsPerSecond / h.opsPerSecond)} | ${f.p50Us.toFixed(1)} µs | ${f.p99Us.toFixed(1)} µs |`);
    }
  }
  return lines.join('\n');
}

// ---- report ----

interface Target {
  readonly what: string;
  readonly target: string;
  readonly measured: string;
  readonly met: boolean;
}
const targets: Target[] = [];

function get(scenario: string, contender: string): number | undefined {
  const entry = Object.entries(results).find(([name]) => name.startsWith(scenario));
  return entry?.[1][contender]?.median;
}

function target(what: string, scenario: string, check: (heraldValue: number, of: (c: string) => number) => [string, string, boolean]): void {
  const h = get(scenario, 'herald');
  if (h === undefined) return;
  const [wanted, measured, met] = check(h, (c) => get(scenario, c) ?? NaN);
  targets.push({ what, target: wanted, measured, met });
}

const x = (n: number): string => `${n.toFixed(2)}×`;

function evaluateTargets(): void {
  for (const observers of [1000, 10000]) {
    for (const kinds of ['one', 'eight']) {
      const scenario = `notify → all callbacks, ${observers} observers, ${kinds}-kind`;
      target(`fan-out ${observers} (${kinds}-kind) vs floor`, scenario, (h, of) => ['≤ 1.50×', x(h / of('floor')), h / of('floor') <= 1.5]);
      target(`fan-out ${observers} (${kinds}-kind) vs node:events, eventemitter3`, scenario, (h, of) => [
        'faster than both', `${x(of('node:events') / h)} / ${x(of('eventemitter3') / h)} faster`, h < of('node:events') && h < of('eventemitter3'),
      ]);
    }
  }
  target('mixed hub vs Map-of-arrays floor', 'mixed hub', (h, of) => ['≤ 1.30×', x(h / of('floor')), h / of('floor') <= 1.3]);
  target('notify, one observer, vs floor', 'notify → all callbacks, 1 observers', (h, of) => ['≤ 3.00×', x(h / of('floor')), h / of('floor') <= 3]);
  target('notify, no observers, vs node:events', 'notify a key with no observers', (h, of) => ['≤ 1.00×', x(h / of('node:events')), h <= of('node:events')]);
  target('remove 10 000 in random order', 'remove 10000 observers', (h) => ['≤ 2 ms total', `${(h / 1e6).toFixed(2)} ms`, h <= 2e6]);
  const r10 = get('remove 10000 observers', 'herald');
  target('remove 100 000 vs 10 000', 'remove 100000 observers', (h) => ['≤ 10× the 10 000 time', r10 === undefined ? 'n/a' : x(h / r10), r10 !== undefined && h <= 10 * r10]);
  target('churn at 1000 observers vs floor', 'churn at 1000', (h, of) => ['≤ 1.50×', x(h / of('floor')), h / of('floor') <= 1.5]);
  for (const writers of [1, 8]) {
    const byContender = storeResults[`PostgresSessionStore: set, ${writers} concurrent writer${writers === 1 ? '' : 's'}`];
    if (byContender === undefined) continue;
    const ratio = byContender['herald']!.opsPerSecond / byContender['raw pg UPDATE in a transaction']!.opsPerSecond;
    targets.push({ what: `PostgreSQL set throughput, ${writers} writer${writers === 1 ? '' : 's'}, vs raw pg`, target: '≥ 0.80×', measured: x(ratio), met: ratio >= 0.8 });
  }
  for (const engine of ['redis', 'nats'] as const) {
    const byContender = storeResults[clusterName(engine)];
    if (byContender === undefined) continue;
    const h = byContender['herald']!;
    const raw = byContender[rawName[engine]]!;
    const throughput = h.opsPerSecond / raw.opsPerSecond;
    const p99 = h.p99Us / raw.p99Us;
    targets.push({ what: `${engine}: cross-node throughput vs the raw client`, target: '≥ 0.80×', measured: x(throughput), met: throughput >= 0.8 });
    targets.push({ what: `${engine}: cross-node latency p99 vs the raw client`, target: '≤ 1.30×', measured: x(p99), met: p99 <= 1.3 });
  }
  target('retained heap per idle observer', 'retained heap per idle observer', (h) => ['≤ 128 bytes', `${h.toFixed(0)} bytes`, h <= 128]);
  const cycles = QUICK ? 100_000 : 1_000_000;
  target(`heap growth after ${cycles} observe/unsubscribe cycles`, 'heap growth per', (h) => ['< 1 MB', `${((h * cycles) / 1024).toFixed(0)} KiB`, h * cycles < 1024 * 1024]);
}

function format(result: Result): string {
  if (result.unit === 'bytes') return Math.abs(result.median) >= 10 ? `${result.median.toFixed(0)} B` : `${result.median.toFixed(2)} B`;
  const ns = result.median;
  return ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : ns >= 1e3 ? `${(ns / 1e3).toFixed(2)} µs` : `${ns.toFixed(1)} ns`;
}

function report(): string {
  const lines: string[] = [];
  for (const [scenario, byContender] of Object.entries(results)) {
    lines.push(`\n### ${scenario}\n`);
    const floorValue = byContender['floor']?.median;
    const heraldValue = byContender['herald']?.median;
    lines.push('| contender | median | × floor | × herald |', '|---|---:|---:|---:|');
    const rows = Object.entries(byContender).sort((a, b) => a[1].median - b[1].median);
    for (const [name, result] of rows) {
      const vsFloor = floorValue && floorValue > 0 && result.unit !== 'bytes' ? x(result.median / floorValue) : '';
      // A ratio to a figure near zero (herald's heap growth) says nothing.
      const vsHerald = heraldValue !== undefined && heraldValue >= (result.unit === 'bytes' ? 1 : Number.MIN_VALUE) ? x(result.median / heraldValue) : '';
      lines.push(`| ${name === 'herald' ? '**herald**' : name} | ${format(result)} | ${vsFloor} | ${vsHerald} |`);
    }
  }
  lines.push('\n### targets\n', '| target | wanted | measured | met |', '|---|---|---|---|');
  for (const t of targets) lines.push(`| ${t.what} | ${t.target} | ${t.measured} | ${t.met ? 'yes' : '**not met**'} |`);
  return lines.join('\n');
}

// ---- main ----

const R = QUICK ? 3 : 21;

fixedCosts(QUICK ? 3 : 15);
await fanout(1, 1, 2000, R);
await noObservers(R);
for (const kinds of [1, 8] as const) {
  await fanout(1000, kinds, QUICK ? 5 : 20, R);
  await fanout(10_000, kinds, QUICK ? 1 : 4, R);
}
await mixedHub(R);
await churn(QUICK ? 50 : 200, R);
await removeAll(10_000, QUICK ? [herald, floor] : [herald, floor, ...PEERS], QUICK ? 3 : 7);
await removeAll(100_000, [herald, floor], QUICK ? 3 : 7);
await idleHeap(QUICK ? 20_000 : 50_000, QUICK ? 1 : 3);
await cycleGrowth(QUICK ? 100_000 : 1_000_000, QUICK ? 20_000 : 200_000);
await stores();
await clusters();
progress('');
if (QUICK) notes.push('quick run: fewer rounds, removal peers skipped, 100 000 cycles instead of 1 000 000; figures are a smoke test, not a measurement');
if (!QUICK && results['remove 10000 observers of one key in random order (total)'] !== undefined) {
  notes.push('remove 100 000: peers not run (each is O(n) per removal: minutes)');
}

evaluateTargets();
const machine = {
  date: new Date().toISOString(),
  cpu: os.cpus()[0]?.model ?? 'unknown',
  cores: os.cpus().length,
  memoryGiB: Math.round(os.totalmem() / 2 ** 30),
  node: process.version,
  platform: `${os.platform()} ${os.arch()}`,
  quick: QUICK,
  seconds: Math.round((Date.now() - started) / 1000),
};
const table = `${report()}\n${storeReport()}`;
console.log(`# herald benchmark — ${machine.date.slice(0, 10)}, ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Node ${machine.node}${QUICK ? ' (quick)' : ''}`);
console.log(table);
for (const note of notes) console.log(`\nnote: ${note}`);
console.log(`\n(${machine.seconds} s; sink ${readSink() & 0xff})`);
if (FILTER === undefined) {
  writeFileSync(new URL(QUICK ? './results.quick.json' : './results.json', import.meta.url), `${JSON.stringify({ machine, results, stores: storeResults, targets, notes }, null, 2)}\n`);
}
