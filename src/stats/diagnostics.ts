import diagnostics_channel from 'node:diagnostics_channel';
import type { Change, CloseReason, ErrorContext } from '../core/types.js';

/** What herald publishes on `herald:notify`: one accepted change. */
export interface NotifyMessage {
  /** The hub that accepted the change. */
  readonly hub: object;
  readonly change: Change;
  /** How many observers the change's snapshot holds (its fan-out). */
  readonly observers: number;
}

/** What herald publishes on `herald:observer`: an observer added to or removed from a hub. */
export interface ObserverMessage {
  readonly hub: object;
  readonly event: 'added' | 'removed';
  /** The observer's `Subscription.id`. */
  readonly id: string;
  /** The key, or the pattern, it observes. */
  readonly key: string;
  /** Why it was removed; only on `'removed'`. */
  readonly reason?: CloseReason;
}

/** What herald publishes on `herald:error`: an observer failure, as `onError` receives it. */
export interface ErrorMessage {
  readonly hub: object;
  readonly error: unknown;
  readonly context: ErrorContext;
}

/**
 * Channels herald publishes on. Publishing is guarded by `hasSubscribers`:
 * while nobody listens, a notify reads that flag and builds no message.
 *
 * - `herald:notify`: a {@link NotifyMessage} for each accepted change.
 * - `herald:observer`: an {@link ObserverMessage} for each observer added or removed.
 * - `herald:error`: an {@link ErrorMessage} for each observer failure.
 */
export const channels: {
  readonly notify: diagnostics_channel.Channel;
  readonly observer: diagnostics_channel.Channel;
  readonly error: diagnostics_channel.Channel;
} = {
  notify: diagnostics_channel.channel('herald:notify'),
  observer: diagnostics_channel.channel('herald:observer'),
  error: diagnostics_channel.channel('herald:error'),
};
