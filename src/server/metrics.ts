import type { Stats } from '../core/types.js';
import type { TransportCounters, TransportName } from './connections.js';

/** One metric: its name, type, help text and what it reads from the stats. */
type Metric = readonly [name: string, type: 'counter' | 'gauge', help: string, read: (stats: Stats) => number | undefined];

const METRICS: readonly Metric[] = [
  ['herald_notifications_total', 'counter', 'Changes accepted by notify.', (s) => s.notifications],
  ['herald_notifications_skipped_total', 'counter', 'notify calls that equals called unchanged.', (s) => s.notificationsSkipped],
  ['herald_fan_out_total', 'counter', 'Observers in the snapshots of accepted changes.', (s) => s.fanOut],
  ['herald_deliveries_total', 'counter', 'Callback invocations.', (s) => s.deliveries],
  ['herald_delivery_errors_total', 'counter', 'Callbacks that threw or rejected.', (s) => s.deliveryErrors],
  ['herald_delivery_timeouts_total', 'counter', 'Callbacks that outlived callbackTimeoutMs.', (s) => s.deliveryTimeouts],
  ['herald_dropped_total', 'counter', 'Changes dropped from full observer queues.', (s) => s.dropped],
  ['herald_coalesced_total', 'counter', 'Changes merged into a pending one.', (s) => s.coalesced],
  ['herald_cancelled_total', 'counter', 'Deliveries cancelled by their observer\'s removal.', (s) => s.cancelled],
  ['herald_gap_signals_total', 'counter', 'Gap signals handed to observers.', (s) => s.gapSignals],
  ['herald_observers_added_total', 'counter', 'Observers registered.', (s) => s.observersAdded],
  ['herald_observers_removed_total', 'counter', 'Observers removed.', (s) => s.observersRemoved],
  ['herald_observers', 'gauge', 'Observers registered now.', (s) => s.activeObservers],
  ['herald_keys', 'gauge', 'Keys with observers now.', (s) => s.keys],
  ['herald_queued', 'gauge', 'Changes waiting in observer queues now.', (s) => s.queued],
  ['herald_pending', 'gauge', 'Deliveries not yet settled.', (s) => s.pending],
  ['herald_backplane_connected', 'gauge', '1 while the backplane is connected.', (s) => (s.backplane === undefined ? undefined : s.backplane.connected ? 1 : 0)],
  ['herald_backplane_published_total', 'counter', 'Changes handed to the backplane\'s engine.', (s) => s.backplane?.published],
  ['herald_backplane_publish_failed_total', 'counter', 'Changes the engine refused.', (s) => s.backplane?.publishFailed],
  ['herald_backplane_publish_dropped_total', 'counter', 'Changes dropped while the engine was away.', (s) => s.backplane?.publishDropped],
  ['herald_backplane_received_total', 'counter', 'Changes of other nodes delivered here.', (s) => s.backplane?.received],
  ['herald_backplane_gaps_total', 'counter', 'Gap signals raised by the backplane.', (s) => s.backplane?.gaps],
];

/** One metric per transport. */
type TransportMetric = readonly [name: string, type: 'counter' | 'gauge', help: string, read: (counters: TransportCounters) => number];

const TRANSPORT_METRICS: readonly TransportMetric[] = [
  ['herald_connections', 'gauge', 'Watching connections open now.', (c) => c.connections],
  ['herald_subscriptions', 'gauge', 'Watches open now.', (c) => c.subscriptions],
  ['herald_events_sent_total', 'counter', 'Events (changes and gaps) written to watchers.', (c) => c.eventsSent],
  ['herald_events_dropped_total', 'counter', 'Events not written because the connection was over its send bound (it then ends as slow-consumer).', (c) => c.eventsDropped],
];

/** The hub's stats and the server's per-transport counters in the Prometheus text format (version 0.0.4). */
export function prometheusText(stats: Stats, transports: Readonly<Record<TransportName, TransportCounters>>): string {
  let text = '';
  for (const [name, type, help, read] of METRICS) {
    const value = read(stats);
    if (value === undefined) continue;
    text += `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name} ${value}\n`;
  }
  for (const [name, type, help, read] of TRANSPORT_METRICS) {
    text += `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`;
    for (const [transport, counters] of Object.entries(transports)) text += `${name}{transport="${transport}"} ${read(counters)}\n`;
  }
  return text;
}
