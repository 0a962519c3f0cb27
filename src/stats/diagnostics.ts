import diagnostics_channel from 'node:diagnostics_channel';
import type { Change, CloseReason, ErrorContext } from '../core/types.js';

/** What `herald:notify` carries: one accepted change and how many observers its snapshot holds. */
export interface NotifyMessage {
  /** The hub that accepted the change (an `ObserverManager`). */
  readonly hub: object;
  readonly change: Change;
  readonly observers: number;
}

/** What `herald:observer` carries: an observer registered or removed. */
export interface ObserverMessage {
  readonly hub: object;
  readonly event: 'added' | 'removed';
  readonly id: string;
  /** The key, or the pattern. */
  readonly key: string;
  /** Why it went; only on `removed`. */
  readonly reason?: CloseReason;
}

/** What `herald:error` carries: one observer failure, as `onError` receives it. */
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
 * - `herald:observer`: an {@link ObserverMessage} for each observer registered or removed.
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
