import diagnostics_channel from 'node:diagnostics_channel';

/**
 * Channels herald publishes on. Publishing is guarded by `hasSubscribers`:
 * while nobody listens, a notify reads that flag and builds no message.
 *
 * - `herald:notify`: `{ hub, change, observers }` for each accepted change.
 * - `herald:observer`: `{ hub, event: 'added' | 'removed', id, key, reason? }`.
 * - `herald:error`: `{ hub, error, context }` for each observer failure.
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
