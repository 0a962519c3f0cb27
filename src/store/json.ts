import { HeraldError } from '../errors.js';
import { describeValue } from '../errors.js';

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
  return walk(value, arg, new Set(), true);
}

/**
 * Throws as {@link toJson} would, and copies nothing: `JSON.stringify(value)`
 * then carries `value` exactly. @internal
 */
export function assertJson(value: unknown, arg: string): void {
  walk(value, arg, new Set(), false);
}

/** Checks `value` all the way down; with `clone`, returns a deep frozen copy, otherwise `value` itself. */
function walk(value: unknown, path: string, seen: Set<object>, clone: boolean): JsonValue {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      if (Number.isFinite(value)) return value;
      break;
    case 'object': {
      if (value === null) return null;
      if (seen.has(value)) throw unserializable(path, 'a cycle');
      const proto: unknown = Object.getPrototypeOf(value);
      if (Array.isArray(value)) {
        seen.add(value);
        const out = value.map((item, i) => walk(item, `${path}[${i}]`, seen, clone));
        seen.delete(value);
        return clone ? Object.freeze(out) : value as JsonValue;
      }
      if (proto !== Object.prototype && proto !== null) throw unserializable(path, `an instance of ${value.constructor?.name ?? 'a class'}`);
      seen.add(value);
      const out: Record<string, JsonValue> = {};
      for (const key of Object.keys(value)) {
        const item = walk((value as Record<string, unknown>)[key], `${path}.${key}`, seen, clone);
        // defineProperty, not assignment: a "__proto__" key stays an ordinary key.
        if (clone) Object.defineProperty(out, key, { value: item, enumerable: true });
      }
      seen.delete(value);
      return clone ? Object.freeze(out) : value as JsonValue;
    }
    default:
      break;
  }
  throw unserializable(path, describeValue(value));
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
