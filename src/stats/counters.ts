import type { Stats } from '../core/types.js';

/**
 * The hub's counters, written in place by the modules that do the counting
 * (one object with fixed fields: the hot path's increments stay cheap).
 * They never go down, except `queued`, which is a level.
 */
export class Counters {
  observersAdded = 0;
  observersRemoved = 0;
  notifications = 0;
  notificationsSkipped = 0;
  /** Sum over accepted changes of the observers in their snapshot, plus changes handed to one observer by `deliverTo`. */
  fanOut = 0;
  deliveries = 0;
  deliveryErrors = 0;
  deliveryTimeouts = 0;
  dropped = 0;
  coalesced = 0;
  cancelled = 0;
  cleanupRuns = 0;
  deadObserversRemoved = 0;
  /** Changes waiting in observer queues now. */
  queued = 0;
  gapSignals = 0;

  /** Deliveries not yet settled into one of the four outcomes. */
  get pending(): number {
    return this.fanOut - this.deliveries - this.dropped - this.coalesced - this.cancelled;
  }

  /** The public {@link Stats}: these counters, and what only the hub knows. */
  toStats(hub: Pick<Stats, 'keys' | 'uptimeMs' | 'latency' | 'backplane'>): Stats {
    return {
      observersAdded: this.observersAdded,
      observersRemoved: this.observersRemoved,
      activeObservers: this.observersAdded - this.observersRemoved,
      keys: hub.keys,
      notifications: this.notifications,
      notificationsSkipped: this.notificationsSkipped,
      fanOut: this.fanOut,
      deliveries: this.deliveries,
      deliveryErrors: this.deliveryErrors,
      deliveryTimeouts: this.deliveryTimeouts,
      dropped: this.dropped,
      coalesced: this.coalesced,
      cancelled: this.cancelled,
      pending: this.pending,
      cleanupRuns: this.cleanupRuns,
      deadObserversRemoved: this.deadObserversRemoved,
      queued: this.queued,
      uptimeMs: hub.uptimeMs,
      latency: hub.latency,
      gapSignals: this.gapSignals,
      ...(hub.backplane === undefined ? {} : { backplane: hub.backplane }),
    };
  }
}
