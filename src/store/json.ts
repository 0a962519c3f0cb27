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
  return copy(value, arg, new Set());
}

function copy(value: unknown, path: string, seen: Set<object>): JsonValue {
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
        const out = value.map((item, i) => copy(item, `${path}[${i}]`, seen));
        seen.delete(value);
        return Object.freeze(out);
      }
      if (proto !== Object.prototype && proto !== null) break;
      seen.add(value);
      const out: Record<string, JsonValue> = {};
      for (const key of Object.keys(value)) {
        // defineProperty, not assignment: a "__proto__" key stays an ordinary key.
        Object.defineProperty(out, key, { value: copy((value as Record<string, unknown>)[key], `${path}.${key}`, seen), enumerable: true });
      }
      seen.delete(value);
      return Object.freeze(out);
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
