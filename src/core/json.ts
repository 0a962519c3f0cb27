import { HeraldError } from './errors.js';
import { describeValue } from './errors.js';

/** What a store keeps: what JSON carries, and nothing it would silently change. */
export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [key: string]: JsonValue };

/**
 * A deep, frozen copy of `value`, or a coded error naming where it stops
 * being JSON: functions, symbols, BigInt, undefined, non-finite numbers,
 * cycles and objects other than plain ones and arrays are refused, rather
 * than dropped or mangled as `JSON.stringify` would.
 * @internal
 */
export function toJson(value: unknown, arg: string): JsonValue {
  return checkedWalk(value, arg, true);
}

/**
 * Throws as {@link toJson} would, and copies nothing: `JSON.stringify(value)`
 * then carries `value` exactly. @internal
 */
export function assertJson(value: unknown, arg: string): void {
  checkedWalk(value, arg, false);
}

/** Where a value stops being JSON; its path is gathered while the walk unwinds, so a value that is fine builds none. */
class NotJson extends Error {
  readonly path: (string | number)[] = [];
  constructor(readonly what: string) {
    super(what);
  }
}

function checkedWalk(value: unknown, arg: string, clone: boolean): JsonValue {
  try {
    return walk(value, new Set(), clone);
  } catch (error) {
    if (!(error instanceof NotJson)) throw error;
    const path = error.path.map((step) => (typeof step === 'number' ? `[${step}]` : `.${step}`)).join('');
    throw unserializable(arg + path, error.what);
  }
}

/** Checks `value` all the way down; with `clone`, returns a deep frozen copy, otherwise `value` itself. */
function walk(value: unknown, seen: Set<object>, clone: boolean): JsonValue {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      if (Number.isFinite(value)) return value;
      break;
    case 'object': {
      if (value === null) return null;
      if (seen.has(value)) throw new NotJson('a cycle');
      if (Array.isArray(value)) {
        seen.add(value);
        const out: JsonValue[] | undefined = clone ? new Array<JsonValue>(value.length) : undefined;
        for (let i = 0; i < value.length; i++) {
          const item = step(value[i], i, seen, clone);
          if (out !== undefined) out[i] = item;
        }
        seen.delete(value);
        return out !== undefined ? Object.freeze(out) : value as JsonValue;
      }
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) throw new NotJson(`an instance of ${value.constructor?.name ?? 'a class'}`);
      seen.add(value);
      const out: Record<string, JsonValue> | undefined = clone ? {} : undefined;
      for (const key of Object.keys(value)) {
        const item = step((value as Record<string, unknown>)[key], key, seen, clone);
        // defineProperty, not assignment: a "__proto__" key stays an ordinary key.
        if (out !== undefined) Object.defineProperty(out, key, { value: item, enumerable: true });
      }
      seen.delete(value);
      return out !== undefined ? Object.freeze(out) : value as JsonValue;
    }
    default:
      break;
  }
  throw new NotJson(describeValue(value));
}

/** One element or property: a refusal below it gets its index or name prepended to the path. */
function step(value: unknown, at: string | number, seen: Set<object>, clone: boolean): JsonValue {
  try {
    return walk(value, seen, clone);
  } catch (error) {
    if (error instanceof NotJson) error.path.unshift(at);
    throw error;
  }
}

function unserializable(path: string, what: string): HeraldError {
  return new HeraldError('HERALD_UNSERIALIZABLE', `\`${path}\` must be a JSON value (null, boolean, finite number, string, array or plain object), got ${what}`);
}

/** Deep equality of two JSON values; key order does not matter. @internal */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((item, i) => jsonEqual(item, b[i]));
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}
