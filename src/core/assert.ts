import { InvalidArgumentError } from './errors.js';
import type { Change, CloseReason, Meta, ObserveOptions, OverflowPolicy, QueueOptions, WatchOptions } from './types.js';

export const OVERFLOW_POLICIES: readonly OverflowPolicy[] = ['drop-oldest', 'drop-newest', 'coalesce', 'disconnect'];

export function invalidKey(key: unknown, arg = 'key'): InvalidArgumentError {
  return InvalidArgumentError.expected('HERALD_INVALID_KEY', arg, 'a non-empty string', key);
}

export function assertKey(key: unknown, arg = 'key'): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) throw invalidKey(key, arg);
}

export function assertCallback(callback: unknown, arg = 'callback'): asserts callback is (...args: never[]) => unknown {
  if (typeof callback !== 'function') {
    throw InvalidArgumentError.expected('HERALD_INVALID_CALLBACK', arg, 'a function', callback);
  }
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Options objects may be omitted; anything else must be an object. */
export function assertOptions(options: unknown, arg: string): void {
  if (options !== undefined && (typeof options !== 'object' || options === null || Array.isArray(options))) {
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', arg, 'an options object or undefined', options);
  }
}

export function optionalFunction(value: unknown, arg: string): void {
  if (value !== undefined && typeof value !== 'function') {
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', arg, 'a function or undefined', value);
  }
}

/**
 * The longest delay a Node timer honours: `setTimeout` and `setInterval` fire
 * after 1 ms for anything longer (with a TimeoutOverflowWarning).
 */
export const MAX_TIMER_MS: number = 2 ** 31 - 1;

/**
 * A timer's period or delay in milliseconds: an integer from `min` to
 * {@link MAX_TIMER_MS}, or (when allowed) Infinity for "never".
 */
export function optionalDuration(value: unknown, arg: string, min: number, allowInfinity: boolean): void {
  if (value === undefined) return;
  if (allowInfinity && value === Infinity) return;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > MAX_TIMER_MS) {
    const expected = `an integer number of milliseconds from ${min} to ${MAX_TIMER_MS} (the longest a Node timer waits)${allowInfinity ? ', or Infinity' : ''}`;
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', arg, expected, value);
  }
}

/** An integer option from `min` to `max`, or `fallback` when omitted. */
export function integerOption(value: unknown, arg: string, fallback: number, min: number, max: number = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    const expected = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`;
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', arg, expected, value);
  }
  return value;
}

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

export function assertSignal(signal: unknown, arg: string): asserts signal is AbortSignal | undefined {
  if (signal === undefined) return;
  if (signal instanceof AbortSignal) {
    try {
      // The getter checks the signal's internal slot: an object that only inherits from AbortSignal throws here.
      abortedOf.call(signal);
      return;
    } catch {
      // refused below
    }
  }
  throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', arg, 'an AbortSignal or undefined', signal);
}

/** The `aborted` getter itself, to call on a value: it checks the value is a real signal. */
const abortedOf = Reflect.getOwnPropertyDescriptor(AbortSignal.prototype, 'aborted')?.get as (this: unknown) => boolean;

/**
 * A plain copy of an options object's own enumerable properties, read once:
 * a getter or Proxy trap that throws is refused with `HERALD_INVALID_OPTION`
 * instead of escaping raw, and nothing read later can change under the caller.
 */
export function copyOptions<T extends object>(options: T | undefined, arg: string): T | undefined {
  assertOptions(options, arg);
  if (options === undefined) return undefined;
  try {
    return { ...options };
  } catch {
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', arg, 'an options object whose properties can be read', options);
  }
}

/** Checks the options of `observe`, `observePattern` and `scope.observe`. */
export function assertObserveOptions(options: unknown): void {
  if (options === undefined) return;
  assertOptions(options, 'options');
  const o = options as ObserveOptions;
  assertSignal(o.signal, 'options.signal');
  if (o.owner !== undefined && (typeof o.owner !== 'object' || o.owner === null) && typeof o.owner !== 'function') {
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.owner', 'an object or undefined', o.owner);
  }
  optionalFunction(o.isAlive, 'options.isAlive');
  optionalFunction(o.onClose, 'options.onClose');
  optionalFunction(o.onGap, 'options.onGap');
  if (o.label !== undefined && typeof o.label !== 'string') {
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.label', 'a string or undefined', o.label);
  }
  assertQueue(o.queue, 'options.queue');
}

/** Checks the options of `watch`. */
export function assertWatchOptions(options: unknown): void {
  if (options === undefined) return;
  assertOptions(options, 'options');
  const o = options as WatchOptions;
  assertSignal(o.signal, 'options.signal');
  assertQueue(o.queue, 'options.queue');
  if (o.label !== undefined && typeof o.label !== 'string') {
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.label', 'a string or undefined', o.label);
  }
  if (o.gaps !== undefined && o.gaps !== 'throw' && o.gaps !== 'yield') {
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.gaps', "'throw' or 'yield'", o.gaps);
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

/** A reason an observer can go with. */
export function assertReason(reason: unknown): asserts reason is CloseReason {
  if (!CLOSE_REASONS.includes(reason as CloseReason)) {
    throw InvalidArgumentError.expected('HERALD_INVALID_ARGUMENT', 'reason', `one of ${CLOSE_REASONS.join(', ')}`, reason);
  }
}

export function assertNever(value: never): never {
  throw new Error(`unreachable: ${String(value)}`);
}

/** A frozen copy of a change handed to `deliverTo`, each field read once; a refusal names what is wrong. */
export function toChange(change: unknown): Change {
  const refuse = (what: string): InvalidArgumentError => InvalidArgumentError.expected('HERALD_INVALID_ARGUMENT', 'change', what, change);
  let key: unknown, oldValue: unknown, newValue: unknown, meta: unknown, seq: unknown, at: unknown;
  try {
    if (!isPlainObject(change)) throw refuse('a change: a plain object');
    ({ key, oldValue, newValue, meta, seq, at } = change);
  } catch (error) {
    // A getter or Proxy trap of the caller's that throws is refused like any other bad change.
    throw error instanceof InvalidArgumentError ? error : refuse('a change whose fields can be read');
  }
  if (typeof key !== 'string' || key.length === 0) throw refuse('a change with a non-empty string `key`');
  if (seq !== undefined && (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0)) throw refuse('a change whose `seq` is an integer >= 0 or undefined');
  if (at !== undefined && (typeof at !== 'number' || !Number.isFinite(at))) throw refuse('a change whose `at` is a finite number or undefined');
  let frozenMeta: Meta;
  try {
    frozenMeta = freezeMeta(meta);
  } catch {
    throw refuse('a change whose `meta` is a plain object or undefined');
  }
  return Object.freeze({ key, oldValue, newValue, meta: frozenMeta, seq: seq ?? 0, at: at ?? Date.now() });
}
