/**
 * `npm run bench:ab [-- REF] [-- filter]`: the hub of the working tree
 * against the hub of a git commit (default `HEAD~1`), in one process, in
 * interleaved rounds whose order alternates: the way to tell whether a change
 * made herald faster or slower when two separate runs of `npm run bench`
 * differ by more than the change could explain. REF's `src/` is extracted
 * into the untracked `bench/out/ab/`; only the public API is used, so any
 * commit with `ObserverManager` works. Prints medians and their ratio.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ObserverManager } from '../src/index.js';
import { makeObservers, type Fn } from './contenders.js';

interface Hub {
  observe(key: string, fn: Fn): { unsubscribe(): boolean };
  observePattern(pattern: string, fn: Fn): unknown;
  notify(key: string, oldValue: unknown, newValue: unknown): boolean;
  drain(): Promise<void>;
}
type HubClass = new (options: { sweepIntervalMs: number }) => Hub;
/** One timed sample: returns how many operations it did. */
type Sample = () => Promise<number> | number;

const args = process.argv.slice(2);
const ref = args.find((a) => !a.startsWith('--') && !a.includes(' ')) ?? 'HEAD~1';
const filter = args.find((a) => a !== ref && !a.startsWith('--'));
const rounds = args.includes('--quick') ? 11 : 41;

const root = fileURLToPath(new URL('..', import.meta.url));
const sha = execFileSync('git', ['rev-parse', '--short', ref], { cwd: root, encoding: 'utf8' }).trim();
const dir = fileURLToPath(new URL(`./out/ab/${sha}/`, import.meta.url));
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
execFileSync('sh', ['-c', `git archive ${sha} src | tar -x -C "${dir}"`], { cwd: root });
const theirs = (await import(`${dir}src/index.ts`) as { ObserverManager: HubClass }).ObserverManager;
const ours = ObserverManager as unknown as HubClass;

let value = 0;
const batch = (hub: Hub, key: string, count: number): Sample => async () => {
  for (let i = 0; i < count; i++) hub.notify(key, value, ++value);
  await hub.drain();
  return count;
};
const fanout = (observers: number, kinds: 1 | 8, count: number, pattern: boolean) => (Hub: HubClass): Sample => {
  const hub = new Hub({ sweepIntervalMs: 0 });
  for (const fn of makeObservers(observers, kinds)) hub.observe('fan/k', fn);
  if (pattern) hub.observePattern('fan/*', makeObservers(1, kinds)[0]!);
  return batch(hub, 'fan/k', count);
};

const scenarios: Record<string, (Hub: HubClass) => Sample> = {
  'notify, no observers (per notify)': (Hub) => {
    const hub = new Hub({ sweepIntervalMs: 0 });
    hub.observe('someone-else', makeObservers(1, 1)[0]!);
    return batch(hub, 'nobody', 10_000);
  },
  'notify, 1 observer (per notify)': fanout(1, 1, 2000, false),
  'fan-out 1000, one-kind (per notify)': fanout(1000, 1, 20, false),
  'fan-out 1000, eight-kind (per notify)': fanout(1000, 8, 20, false),
  'fan-out 10000, one-kind (per notify)': fanout(10_000, 1, 4, false),
  'fan-out 10000, eight-kind (per notify)': fanout(10_000, 8, 4, false),
  'fan-out 1000 + 1 pattern, eight-kind (per notify)': fanout(1000, 8, 20, true),
  'mixed hub, 212 keys (per round of notifies)': (Hub) => {
    const hub = new Hub({ sweepIntervalMs: 0 });
    const keys: string[] = [];
    for (const [count, observers] of [[100, 1], [100, 10], [10, 100], [2, 1000]] as const) {
      for (let i = 0; i < count; i++) {
        const key = `mixed/${observers}/${i}`;
        keys.push(key);
        for (const fn of makeObservers(observers, 8)) hub.observe(key, fn);
      }
    }
    return async () => {
      for (const key of keys) hub.notify(key, value, ++value);
      await hub.drain();
      return 1;
    };
  },
  'observe + unsubscribe, 1000 observers of a key (per pair)': (Hub) => {
    const hub = new Hub({ sweepIntervalMs: 0 });
    const fns = makeObservers(1000, 1);
    const subs = fns.map((fn) => hub.observe('churn', fn));
    let next = 0;
    return () => {
      for (let i = 0; i < 1000; i++) {
        const at = next++ % subs.length;
        subs[at]!.unsubscribe();
        subs[at] = hub.observe('churn', fns[at]!);
      }
      return 1000;
    };
  },
};

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[values.length >> 1]!;
const format = (ns: number): string => (ns >= 1e3 ? `${(ns / 1e3).toFixed(2)} µs` : `${ns.toFixed(1)} ns`);

console.log(`# herald A/B: working tree against ${ref} (${sha}), ${rounds} rounds each, alternating\n`);
console.log(`| scenario | ${sha} | working tree | working tree ÷ ${sha} |`, '\n|---|---:|---:|---:|');
for (const [name, make] of Object.entries(scenarios)) {
  if (filter !== undefined && !name.includes(filter)) continue;
  const samples = { theirs: make(theirs), ours: make(ours) };
  const times = { theirs: [] as number[], ours: [] as number[] };
  for (let round = -5; round < rounds; round++) {
    for (const side of round % 2 === 0 ? (['theirs', 'ours'] as const) : (['ours', 'theirs'] as const)) {
      const t0 = process.hrtime.bigint();
      const ops = await samples[side]();
      if (round >= 0) times[side].push(Number(process.hrtime.bigint() - t0) / ops);
    }
  }
  const [a, b] = [median(times.theirs), median(times.ours)];
  console.log(`| ${name} | ${format(a)} | ${format(b)} | ${(b / a).toFixed(2)}× |`);
}
