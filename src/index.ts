/**
 * herald: the observer manager for TypeScript. An in-process hub between the
 * places where state changes and everything that watches those changes.
 *
 * @example
 * ```ts
 * import { ObserverManager } from 'herald';
 * const hub = new ObserverManager();
 * hub.observe('session/42/temperature', (change) => console.log(change.newValue));
 * hub.notify('session/42/temperature', 20, 21);
 * ```
 * @module
 */
export { ObserverManager, DEFAULT_CALLBACK_TIMEOUT_MS, DEFAULT_OVERFLOW, DEFAULT_QUEUE_LIMIT, DEFAULT_SWEEP_INTERVAL_MS } from './hub/observer-manager.js';
export { Scope } from './hub/scope.js';
export { Backplane, type BackplaneOptions, type ReconnectOptions } from './cluster/backplane.js';
export {
  isGap, type BackplaneLink, type BackplanePort, type BackplaneSink, type BackplaneState, type BackplaneStats, type Gap, type GapReason, type ReadyOptions,
} from './core/backplane-port.js';
export { jsonCodec, type Codec, type WireChange } from './cluster/codec.js';
export type { BatchedChange, PendingNotifications } from './delivery/pending.js';
export { ClosedError, HeraldError, InvalidArgumentError, InvalidValueError, TimeoutError, type HeraldErrorCode } from './core/errors.js';
export { SessionStore } from './store/session-store.js';
export {
  sessionPattern, variableKey, type CreateSessionOptions, type SessionInfo, type SessionStoreLike, type SetResult,
  type StoreOptions, type StoreWatchOptions, type TransactionContext, type VariableDefinition, type VariableEntry,
} from './store/store.js';
export type { JsonValue } from './core/json.js';
export type { StandardSchemaV1 } from './store/standard-schema.js';
export { channels as diagnosticsChannels, type ErrorMessage, type NotifyMessage, type ObserverMessage } from './stats/diagnostics.js';
export type {
  Change, CloseReason, ErrorContext, HubOptions, Inspection, LatencyStats, Meta, ObserveOptions,
  ObserverCallback, ObserverInfo, OverflowPolicy, QueueOptions, Stats, Subscription, WatchOptions,
} from './core/types.js';
