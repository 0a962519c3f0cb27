import type { Attributes, BatchObservableResult, Meter, Observable } from '@opentelemetry/api';
import { InvalidArgumentError } from '../core/errors.js';
import type { LatencyStats, Stats } from '../core/types.js';

/** Options of {@link createOtelBridge}. */
export interface OtelBridgeOptions {
  /** Where the instruments are created, e.g. `metrics.getMeter('my-service')`. */
  readonly meter: Meter;
  /** Instrument name prefix. @default 'herald' */
  readonly prefix?: string;
  /** Attributes attached to every measurement, e.g. `{ hub: 'sessions' }`. */
  readonly attributes?: Attributes;
}

/** A registered bridge; `close()` (or `using`) unregisters its callback. */
export interface OtelBridge extends Disposable {
  close(): void;
}

type NumericStat = Exclude<keyof Stats, 'latency' | 'backplane'>;
type BackplaneCounter = 'reconnects' | 'published' | 'publishFailed' | 'publishDropped' | 'received' | 'duplicates' | 'malformed' | 'gaps';

/** Monotonic counters: [stat, instrument suffix, description]. */
const COUNTERS: readonly (readonly [NumericStat, string, string])[] = [
  ['observersAdded', 'observers.added', 'Observers registered'],
  ['observersRemoved', 'observers.removed', 'Observers removed, for any reason'],
  ['notifications', 'notifications', 'Changes accepted by notify'],
  ['notificationsSkipped', 'notifications.skipped', 'notify calls skipped as unchanged'],
  ['fanOut', 'fan_out', 'Observer deliveries owed: accepted changes times the observers in their snapshot'],
  ['deliveries', 'deliveries', 'Callback invocations'],
  ['deliveryErrors', 'delivery.errors', 'Callbacks that threw, rejected or timed out'],
  ['deliveryTimeouts', 'delivery.timeouts', 'Callbacks whose promise outlived callbackTimeoutMs'],
  ['dropped', 'dropped', 'Changes dropped by a full observer queue'],
  ['coalesced', 'coalesced', 'Changes merged into another pending change'],
  ['cancelled', 'cancelled', 'Deliveries cancelled because the observer was removed first'],
  ['cleanupRuns', 'cleanup.runs', 'Sweeps run'],
  ['deadObserversRemoved', 'observers.dead_removed', 'Observers removed because their owner or isAlive said they were gone'],
  ['gapSignals', 'gap_signals', 'Gap signals handed to observers'],
];

/** The backplane's counters, reported when the hub has one. */
const BACKPLANE: readonly (readonly [BackplaneCounter, string, string])[] = [
  ['reconnects', 'backplane.reconnects', 'Backplane connections regained after a loss'],
  ['published', 'backplane.published', 'Changes handed to the engine'],
  ['publishFailed', 'backplane.publish_failed', 'Changes the engine refused or lost in transit'],
  ['publishDropped', 'backplane.publish_dropped', 'Changes dropped from the buffer kept while disconnected'],
  ['received', 'backplane.received', 'Changes of other nodes delivered here'],
  ['duplicates', 'backplane.duplicates', 'Changes received twice or out of order, ignored'],
  ['malformed', 'backplane.malformed', 'Messages on herald channels that were not herald changes, ignored'],
  ['gaps', 'backplane.gaps', 'Gap signals raised by the backplane'],
];

/** Levels that go up and down. */
const LEVELS: readonly (readonly [NumericStat, string, string])[] = [
  ['activeObservers', 'observers.active', 'Observers registered now'],
  ['keys', 'keys', 'Keys with at least one observer'],
  ['queued', 'queued', 'Changes waiting in observer queues'],
  ['pending', 'pending', 'Deliveries owed and not yet settled'],
];

const QUANTILES: readonly (readonly [keyof LatencyStats, string])[] = [['p50Ms', 'p50'], ['p90Ms', 'p90'], ['p99Ms', 'p99'], ['maxMs', 'max']];

/**
 * Publishes a hub's {@link Stats} as OpenTelemetry metrics: counters for the
 * monotonic figures, up-down counters for the levels, and a gauge of dispatch
 * latency with a `quantile` attribute. It reads `getStats()` once per
 * collection, so it costs nothing between collections; it needs only
 * `@opentelemetry/api`, and only its types.
 * @example
 * ```ts
 * import { metrics } from '@opentelemetry/api';
 * using bridge = createOtelBridge(hub, { meter: metrics.getMeter('sessions'), attributes: { hub: 'sessions' } });
 * ```
 */
export function createOtelBridge(hub: { getStats(): Stats }, options: OtelBridgeOptions): OtelBridge {
  if (typeof hub?.getStats !== 'function') {
    throw InvalidArgumentError.expected('HERALD_INVALID_ARGUMENT', 'hub', 'a hub with getStats()', hub);
  }
  const meter = options?.meter;
  if (typeof meter?.createObservableCounter !== 'function' || typeof meter.addBatchObservableCallback !== 'function') {
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.meter', 'an OpenTelemetry Meter', meter);
  }
  const prefix = options.prefix ?? 'herald';
  if (typeof prefix !== 'string' || !/^[A-Za-z][\w./-]*$/.test(prefix)) {
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.prefix', 'an instrument name prefix such as "herald"', prefix);
  }
  const attributes = options.attributes ?? {};
  const counters = COUNTERS.map(([stat, name, description]) => [stat, meter.createObservableCounter(`${prefix}.${name}`, { description })] as const);
  const levels = LEVELS.map(([stat, name, description]) => [stat, meter.createObservableUpDownCounter(`${prefix}.${name}`, { description })] as const);
  const latency = meter.createObservableGauge(`${prefix}.dispatch.latency`, {
    description: 'Time from notify accepting a change to its fan-out starting, over recent sampled changes',
    unit: 'ms',
  });
  const remote = BACKPLANE.map(([stat, name, description]) => [stat, meter.createObservableCounter(`${prefix}.${name}`, { description })] as const);
  const observables: Observable[] = [...counters.map(([, o]) => o), ...levels.map(([, o]) => o), ...remote.map(([, o]) => o), latency];
  const callback = (result: BatchObservableResult): void => {
    const stats = hub.getStats();
    for (const [stat, observable] of counters) result.observe(observable, stats[stat], attributes);
    for (const [stat, observable] of levels) result.observe(observable, stats[stat], attributes);
    if (stats.backplane !== undefined) {
      for (const [stat, observable] of remote) result.observe(observable, stats.backplane[stat], { ...attributes, engine: stats.backplane.engine });
    }
    if (stats.latency.samples === 0) return;
    for (const [field, quantile] of QUANTILES) result.observe(latency, stats.latency[field], { ...attributes, quantile });
  };
  meter.addBatchObservableCallback(callback, observables);
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    meter.removeBatchObservableCallback(callback, observables);
  };
  return { close, [Symbol.dispose]: close };
}
