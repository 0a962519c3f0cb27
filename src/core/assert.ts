import { InvalidArgumentError } from './errors.js';
import type { CloseReason, Meta, OverflowPolicy, QueueOptions } from './types.js';

export const OVERFLOW_POLICIES: readonly OverflowPolicy[] = ['drop-oldest', 'drop-newest', 'coalesce', 'disconnect'];

/** @internal */
export function invalidKey(key: unknown, arg = 'key'): InvalidArgumentError {
  return InvalidArgumentError.expected('HERALD_INVALID_KEY', arg, 'a non-empty string', key);
}

/** @internal */
export function assertKey(key: unknown, arg = 'key'): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) throw invalidKey(key, arg);
}

/** @internal */
export function assertCallback(callback: unknown, arg = 'callback'): asserts callback is (...args: never[]) => unknown {
  if (typeof callback !== 'function') {
    throw InvalidArgumentError.expected('HERALD_INVALID_CALLBACK', arg, 'a function', callback);
  }
}

/** @internal */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Options objects may be omitted; anything else must be an object. @internal */
export function assertOptions(options: unknown, arg: string): void {
  if (options !== undefined && (typeof options !== 'object' || options === null || Array.isArray(options))) {
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', arg, 'an options object or undefined', options);
  }
}

/** @internal */
export function optionalFunction(value: unknown, arg: string): void {
  if (value !== undefined && typeof value !== 'function') {
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', arg, 'a function or undefined', value);
  }
}

/** A duration in milliseconds: finite and ≥ 0, or (when allowed) Infinity. @internal */
export function optionalDuration(value: unknown, arg: string, allowInfinity: boolean): void {
  if (value === undefined) return;
  const ok = typeof value === 'number' && value >= 0 && (Number.isFinite(value) || (allowInfinity && value === Infinity));
  if (!ok) {
    const expected = allowInfinity ? 'a number of milliseconds ≥ 0, or Infinity' : 'a finite number of milliseconds ≥ 0';
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', arg, expected, value);
  }
}

/** @internal */
export function assertQueue(queue: unknown, arg: string): asserts queue is QueueOptions | undefined {
  if (queue === undefined) return;
  assertOptions(queue, arg);
  const { limit, overflow } = queue as QueueOptions;
  if (limit !== undefined && !(limit === Infinity || (Number.isInteger(limit) && limit >= 0))) {
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', `${arg}.limit`, 'an integer ≥ 0 or Infinity', limit);
  }
  if (overflow !== undefined && !OVERFLOW_POLICIES.includes(overflow)) {
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', `${arg}.overflow`, `one of ${OVERFLOW_POLICIES.join(', ')}`, overflow);
  }
}

/** @internal */
export function assertSignal(signal: unknown, arg: string): asserts signal is AbortSignal | undefined {
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', arg, 'an AbortSignal or undefined', signal);
  }
}

export const EMPTY_META: Meta = Object.freeze({});

/**
 * `meta` as changes carry it: frozen, plain, and a copy unless the caller's
 * object was frozen already (so the caller's own object is never frozen under it).
 * @internal
 */
export function freezeMeta(meta: unknown): Meta {
  if (meta === undefined) return EMPTY_META;
  if (!isPlainObject(meta)) throw InvalidArgumentError.expected('HERALD_INVALID_ARGUMENT', 'meta', 'a plain object or undefined', meta);
  return Object.isFrozen(meta) ? meta : Object.freeze({ ...meta });
}

export const CLOSE_REASONS: readonly CloseReason[] = [
  'unsubscribed', 'aborted', 'owner-collected', 'dead', 'slow-consumer', 'hub-closed', 'session-ended',
];

/** @internal */
export function assertNever(value: never): never {
  throw new Error(`unreachable: ${String(value)}`);
}
