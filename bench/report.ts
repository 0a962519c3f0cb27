/**
 * The results file and everything made from it: the targets, the Markdown
 * tables (printed by every run, written into the README by
 * `npm run bench:publish`) and the names of the charts.
 */
import type { ServerFigures, ServerSettings } from './server.js';
import type { StoreResults } from './stores.js';

export interface Result {
  readonly unit: 'ns/op' | 'bytes';
  readonly median: number;
  readonly samples: number;
}

export interface Target {
  readonly what: string;
  readonly target: string;
  readonly measured: string;
  readonly met: boolean;
}

/** How much work each part of a run did, so that the README can say it without copying figures by hand. */
export interface Settings {
  readonly rounds: number;
  readonly removalRounds: number;
  readonly idleHeapRounds: number;
  readonly memoryStore: { readonly ops: number; readonly rounds: number };
  readonly postgresStore: { readonly durationMs: number; readonly rounds: number };
  readonly cluster: {
    readonly messages: Readonly<Record<string, number>>;
    readonly latencySamples: number;
    readonly rounds: number;
  };
  /** The server fan-out section (absent from files written before it existed). */
  readonly server?: ServerSettings;
}

/** Scenario → contender → figures of the server fan-out section. */
export type ServerResults = Record<string, Record<string, ServerFigures>>;

/** What `npm run bench` writes to bench/out/results.json, and `npm run bench:publish` copies to bench/results.json. */
export interface ResultsFile {
  readonly run: {
    readonly date: string;
    readonly seconds: number;
    readonly quick: boolean;
    readonly filter: string | null;
    readonly command: string;
  };
  readonly commit: { readonly sha: string; readonly dirty: boolean };
  readonly machine: {
    readonly cpu: string;
    readonly cores: number;
    readonly memoryGiB: number;
    readonly node: string;
    readonly platform: string;
  };
  readonly settings: Settings;
  readonly results: Record<string, Record<string, Result>>;
  readonly stores: StoreResults;
  /** The server fan-out section (absent from files written before it existed). */
  readonly servers?: ServerResults;
  readonly targets: readonly Target[];
  readonly notes: readonly string[];
}

// ---- scenario names: one place, so that targets, tables and charts agree ----

export type Kinds = 'one' | 'eight';
export const fanoutName = (observers: number, kinds: Kinds, pattern = false): string =>
  `notify → all callbacks, ${observers} observers${pattern ? ' + 1 matching pattern' : ''}, ${kinds}-kind`;
export const NO_OBSERVERS = 'notify a key with no observers';
export const MIXED_HUB = 'mixed hub: 212 keys with 1, 10, 100 and 1000 observers';
export const CHURN = 'churn at 1000 observers: unsubscribe one, observe one, notify';
export const COALESCE_OVERLOAD = 'a busy observer under coalesce with a full queue of 10 000 keys: one more change of each key (per change)';
export const removalName = (observers: number): string => `remove ${observers} observers of one key in random order (total)`;
export const idleHeapName = (observers: number): string => `retained heap per idle observer, handle included (${observers} observers)`;
export const cycleGrowthName = (cycles: number, peerCycles: number): string =>
  `heap growth per observe/unsubscribe cycle on fresh keys (herald and floor ${cycles} cycles, peers ${peerCycles})`;
export const FIXED_COSTS = 'fixed costs of one change (ns each, not contenders)';
export const postgresStoreName = (writers: number): string => `PostgresSessionStore: set, ${writers} concurrent writer${writers === 1 ? '' : 's'}`;
export const MEMORY_STORE = 'in-memory SessionStore: set with one watcher';
export type Engine = 'redis' | 'nats' | 'postgres';
export const clusterName = (engine: Engine): string =>
  `across nodes on ${engine === 'postgres' ? 'PostgreSQL' : engine === 'redis' ? 'Redis' : 'NATS'}: notify on node A → callback on node B`;
export const serverFanoutName = (watchers: number): string =>
  `server fan-out: one set → ${watchers.toLocaleString('en-US').replace(/,/g, ' ')} watchers over 127.0.0.1 (herald WebSocket and SSE, bare ws, socket.io)`;
export const grpcFanoutName = (streams: number): string =>
  `server fan-out over gRPC: one set → ${streams.toLocaleString('en-US').replace(/,/g, ' ')} Watch streams over 127.0.0.1 (herald gRPC, bare grpc-js)`;
/** The rows of the server fan-out tables (see bench/server.ts: SERVER_CONTENDERS, GRPC_CONTENDERS). */
export const HERALD_WS = 'herald (WebSocket)';
export const BARE_WS = 'floor: bare ws broadcast';
export const SOCKET_IO = 'socket.io room broadcast';
export const HERALD_GRPC = 'herald (gRPC)';
export const BARE_GRPC = 'floor: bare grpc-js, the same bytes to every stream';
export const isClusterScenario = (name: string): boolean => name.startsWith('across nodes');

/** The raw client's row in each engine's table. */
export const rawName: Record<Engine, string> = {
  redis: 'raw ioredis PUBLISH / SUBSCRIBE',
  nats: 'raw NATS client publish / subscribe',
  postgres: 'raw pg_notify / LISTEN',
};
const RAW_PG = 'raw pg UPDATE in a transaction';

export const x = (n: number): string => `${n.toFixed(2)}×`;

// ---- targets ----

/** herald's targets, checked against one run. */
export function evaluateTargets(results: ResultsFile['results'], stores: StoreResults, cycles: number, servers: ServerResults = {}): Target[] {
  const targets: Target[] = [];
  const of = (scenario: string, contender: string): number => results[scenario]?.[contender]?.median ?? NaN;
  const add = (what: string, scenario: string, check: (h: number, peer: (c: string) => number) => [string, string, boolean]): void => {
    if (results[scenario]?.['herald'] === undefined) return;
    const [target, measured, met] = check(of(scenario, 'herald'), (c) => of(scenario, c));
    targets.push({ what, target, measured, met });
  };
  const fasterThanBoth = (h: number, peer: (c: string) => number): [string, string, boolean] => [
    'faster than node:events and eventemitter3',
    `herald ${x(h / peer('node:events'))} node:events' time, ${x(h / peer('eventemitter3'))} eventemitter3's`,
    h < peer('node:events') && h < peer('eventemitter3'),
  ];
  for (const pattern of [false, true]) {
    for (const observers of [1000, 10_000]) {
      for (const kinds of ['one', 'eight'] as const) {
        const scenario = fanoutName(observers, kinds, pattern);
        const label = `fan-out ${observers}${pattern ? ' + 1 pattern' : ''} (${kinds}-kind)`;
        if (!pattern) add(`${label} vs floor`, scenario, (h, peer) => ['≤ 1.50× floor', x(h / peer('floor')), h / peer('floor') <= 1.5]);
        add(`${label} vs node:events, eventemitter3`, scenario, fasterThanBoth);
      }
    }
  }
  add('mixed hub vs floor', MIXED_HUB, (h, peer) => ['≤ 1.30× floor', x(h / peer('floor')), h / peer('floor') <= 1.3]);
  add('notify, one observer, vs floor', fanoutName(1, 'one'), (h, peer) => ['≤ 3.00× floor', x(h / peer('floor')), h / peer('floor') <= 3]);
  add('notify, no observers, vs node:events', NO_OBSERVERS, (h, peer) => ['≤ 1.00× node:events', x(h / peer('node:events')), h <= peer('node:events')]);
  for (const observers of [10_000, 100_000]) {
    add(`remove ${observers.toLocaleString('en-US').replace(',', ' ')} in random order vs the indexed floor`, removalName(observers), (h, peer) => [
      '≤ 1.50× the indexed floor', x(h / peer('floor')), h / peer('floor') <= 1.5,
    ]);
  }
  add('churn at 1000 observers vs floor', CHURN, (h, peer) => ['≤ 1.50× floor', x(h / peer('floor')), h / peer('floor') <= 1.5]);
  for (const writers of [1, 8]) {
    const byContender = stores[postgresStoreName(writers)];
    if (byContender === undefined) continue;
    const ratio = byContender['herald']!.opsPerSecond / byContender[RAW_PG]!.opsPerSecond;
    targets.push({ what: `PostgreSQL set throughput, ${writers} writer${writers === 1 ? '' : 's'}, vs raw pg`, target: '≥ 0.80×', measured: x(ratio), met: ratio >= 0.8 });
  }
  for (const engine of ['redis', 'nats'] as const) {
    const byContender = stores[clusterName(engine)];
    if (byContender === undefined) continue;
    const h = byContender['herald']!;
    const raw = byContender[rawName[engine]]!;
    const throughput = h.opsPerSecond / raw.opsPerSecond;
    const p99 = h.p99Us / raw.p99Us;
    targets.push({ what: `${engine}: cross-node throughput vs the raw client`, target: '≥ 0.80×', measured: x(throughput), met: throughput >= 0.8 });
    targets.push({ what: `${engine}: cross-node latency p99 vs the raw client`, target: '≤ 1.30×', measured: x(p99), met: p99 <= 1.3 });
  }
  for (const byContender of Object.values(servers)) {
    const g = byContender[HERALD_GRPC];
    const grpcFloor = byContender[BARE_GRPC];
    if (g !== undefined && grpcFloor !== undefined) {
      const n = g.watchers.toLocaleString('en-US').replace(/,/g, ' ');
      for (const [label, key] of [['p50', 'p50Us'], ['p99', 'p99Us']] as const) {
        const ratio = g[key] / grpcFloor[key];
        targets.push({ what: `server: set → ${n} gRPC Watch streams, latency ${label}, vs a bare grpc-js server`, target: '≤ 1.50× bare grpc-js', measured: `${x(ratio)} (${us(g[key])} vs ${us(grpcFloor[key])})`, met: ratio <= 1.5 });
      }
    }
    const h = byContender[HERALD_WS];
    const floor = byContender[BARE_WS];
    const peer = byContender[SOCKET_IO];
    if (h === undefined) continue;
    const n = h.watchers.toLocaleString('en-US').replace(/,/g, ' ');
    if (floor !== undefined) {
      for (const [label, key] of [['p50', 'p50Us'], ['p99', 'p99Us']] as const) {
        const ratio = h[key] / floor[key];
        targets.push({ what: `server: set → ${n} WebSocket watchers, latency ${label}, vs a bare ws broadcast`, target: '≤ 1.50× bare ws', measured: `${x(ratio)} (${us(h[key])} vs ${us(floor[key])})`, met: ratio <= 1.5 });
      }
    }
    if (peer !== undefined) {
      for (const [label, key] of [['p50', 'p50Us'], ['p99', 'p99Us']] as const) {
        const ratio = h[key] / peer[key];
        targets.push({ what: `server: set → ${n} WebSocket watchers, latency ${label}, vs socket.io`, target: 'below socket.io', measured: `${x(ratio)} socket.io's (${us(h[key])} vs ${us(peer[key])})`, met: ratio < 1 });
      }
      const ratio = h.setsPerSecond / peer.setsPerSecond;
      targets.push({ what: `server: sets/s reaching all ${n} WebSocket watchers vs socket.io`, target: 'above socket.io', measured: `${x(ratio)} socket.io's (${h.setsPerSecond.toFixed(1)} vs ${peer.setsPerSecond.toFixed(1)})`, met: ratio > 1 });
    }
  }
  add('retained heap per idle observer', Object.keys(results).find((name) => name.startsWith('retained heap')) ?? '', (h) => ['≤ 128 bytes', `${h.toFixed(0)} bytes`, h <= 128]);
  add(`heap growth after ${cycles} observe/unsubscribe cycles`, Object.keys(results).find((name) => name.startsWith('heap growth')) ?? '', (h) => [
    '< 1 MB', `${((h * cycles) / 1024).toFixed(0)} KiB`, h * cycles < 1024 * 1024,
  ]);
  return targets;
}

// ---- Markdown ----

const us = (value: number): string => (value >= 1000 ? `${(value / 1000).toFixed(2)} ms` : `${value.toFixed(0)} µs`);
const bytes = (value: number): string => (Math.abs(value) >= 10_240 ? `${(value / 1024).toFixed(1)} KiB` : `${value.toFixed(0)} B`);

/** The server fan-out tables: one row per contender, ratios to the scenario's floor (bare ws, bare grpc-js). */
export function serverTables(servers: ServerResults | undefined): string {
  const lines: string[] = [];
  for (const [scenario, byContender] of Object.entries(servers ?? {})) {
    const floor = byContender[BARE_WS] ?? byContender[BARE_GRPC];
    const header = byContender[HERALD_GRPC] !== undefined || byContender[BARE_GRPC] !== undefined
      ? '| contender | streams | latency p50 | p99 | p99 × floor | last stream | sets/s to all | heap / stream | RSS / stream | message | connect all |'
      : '| contender | watchers | latency p50 | p99 | p99 × floor | last watcher | sets/s to all | heap / connection | RSS / connection | frame | connect all |';
    lines.push('', `#### ${scenario}`, '', header, '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const [name, f] of Object.entries(byContender)) {
      const vsFloor = floor === undefined ? '' : x(f.p99Us / floor.p99Us);
      lines.push(`| ${name === HERALD_WS || name.startsWith('herald') ? `**${name}**` : name} | ${f.watchers} | ${us(f.p50Us)} | ${us(f.p99Us)} | ${vsFloor} | ${f.lastMs.toFixed(1)} ms | `
        + `${f.setsPerSecond.toFixed(1)} | ${bytes(f.heapPerConnection)} | ${bytes(f.rssPerConnection)} | ${f.frameBytes} B | ${f.connectSeconds.toFixed(1)} s |`);
    }
  }
  return lines.join('\n');
}

function format(result: Result): string {
  if (result.unit === 'bytes') return Math.abs(result.median) >= 10 ? `${result.median.toFixed(0)} B` : `${result.median.toFixed(2)} B`;
  const ns = result.median;
  return ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : ns >= 1e3 ? `${(ns / 1e3).toFixed(2)} µs` : `${ns.toFixed(1)} ns`;
}

/** The floor's median when ratios to it mean something (not for figures near zero, such as heap growth). */
export function floorOf(byContender: Record<string, Result>): number | undefined {
  const floorValue = byContender['floor']?.median;
  return floorValue !== undefined && floorValue >= 1 ? floorValue : undefined;
}

/** The file name of a scenario's chart. */
export function chartFile(scenario: string): string {
  return `${scenario.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '')}.svg`;
}

const bold = (name: string): string => (name === 'herald' ? '**herald**' : name);

/** One table per scenario; with `chartDir`, each is followed by its chart (a link relative to the README). */
export function scenarioTables(results: ResultsFile['results'], chartDir?: string): string {
  const lines: string[] = [];
  for (const [scenario, byContender] of Object.entries(results)) {
    lines.push('', `#### ${scenario}`, '');
    const floorValue = floorOf(byContender);
    const heraldValue = byContender['herald']?.median;
    lines.push('| contender | median | × floor | × herald |', '|---|---:|---:|---:|');
    for (const [name, result] of Object.entries(byContender).sort((a, b) => a[1].median - b[1].median)) {
      const vsFloor = floorValue !== undefined ? x(result.median / floorValue) : '';
      // A ratio to a figure near zero (herald's heap growth) says nothing.
      const vsHerald = heraldValue !== undefined && heraldValue >= (result.unit === 'bytes' ? 1 : Number.MIN_VALUE) ? x(result.median / heraldValue) : '';
      lines.push(`| ${bold(name)} | ${format(result)} | ${vsFloor} | ${vsHerald} |`);
    }
    if (chartDir !== undefined && floorValue !== undefined) {
      lines.push('', `![${scenario}: each contender's median ÷ the floor's](${chartDir}/${chartFile(scenario)})`);
    }
  }
  return lines.join('\n');
}

/** The store and cross-node tables (`cluster` picks which). */
export function storeTables(stores: StoreResults, cluster: boolean): string {
  const lines: string[] = [];
  for (const [scenario, byContender] of Object.entries(stores)) {
    if (isClusterScenario(scenario) !== cluster) continue;
    const h = byContender['herald']!;
    lines.push('', `#### ${scenario}`, '', '| contender | operations/s | × herald | latency p50 | latency p99 |', '|---|---:|---:|---:|---:|');
    for (const [name, f] of Object.entries(byContender)) {
      lines.push(`| ${bold(name)} | ${f.opsPerSecond.toFixed(0)} | ${x(f.opsPerSecond / h.opsPerSecond)} | ${f.p50Us.toFixed(1)} µs | ${f.p99Us.toFixed(1)} µs |`);
    }
  }
  return lines.join('\n');
}

/** The targets table; `cluster` picks the cross-node targets or all the others. */
export function targetsTable(targets: readonly Target[], cluster: boolean): string {
  const lines = ['| target | wanted | measured | met |', '|---|---|---|---|'];
  for (const t of targets) {
    if (/cross-node/.test(t.what) !== cluster) continue;
    lines.push(`| ${t.what} | ${t.target} | ${t.measured} | ${t.met ? 'yes' : '**not met**'} |`);
  }
  return lines.join('\n');
}

/** One line: when, where, on which commit, how long. */
export function runLine(file: ResultsFile): string {
  const { run, commit, machine } = file;
  const tree = commit.dirty ? ', with uncommitted changes' : '';
  return `Run of ${run.date.slice(0, 10)} on ${machine.cpu} (${machine.cores} cores, ${machine.memoryGiB} GiB), Node ${machine.node}, ${machine.platform}; commit \`${commit.sha.slice(0, 10)}\`${tree}; \`${run.command}\`, ${run.seconds} s.`;
}

/** Everything a run prints: every table and the targets. */
export function consoleReport(file: ResultsFile): string {
  return [
    `# herald benchmark${file.run.quick ? ' (quick)' : ''}`,
    runLine(file),
    scenarioTables(file.results),
    storeTables(file.stores, false),
    storeTables(file.stores, true),
    serverTables(file.servers),
    '\n### targets\n',
    targetsTable(file.targets, false),
    targetsTable(file.targets, true).split('\n').slice(2).join('\n'),
    ...file.notes.map((note) => `\nnote: ${note}`),
  ].join('\n');
}
