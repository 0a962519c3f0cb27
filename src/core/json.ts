import { HeraldError } from './errors.js';
import { describeValue } from './errors.js';

/** What a store keeps: what JSON carries, and nothing it would silently change. */
export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [key: string]: JsonValue };

/** How deep a JSON value may nest: deeper values are refused up front, never overflow a walk. */
export const MAX_JSON_DEPTH = 512;

/**
 * What the stores add to the JSON rules: every string (values, object keys)
 * is well-formed UTF-16 (no lone surrogate, which PostgreSQL cannot keep)
 * and holds no NUL (which its JSONB refuses), so that both stores keep what
 * they are given, exactly.
 */
export interface JsonRules {
  readonly text?: boolean;
}

/**
 * A deep, frozen copy of `value`, or a coded error naming where it stops
 * being JSON: functions, symbols, BigInt, undefined, non-finite numbers, -0
 * (JSON has no negative zero), symbol-keyed properties, cycles, nesting past
 * {@link MAX_JSON_DEPTH}, getters or Proxy traps that throw, and objects
 * other than plain ones and arrays are refused, rather than dropped or
 * mangled as `JSON.stringify` would.
 */
export function toJson(value: unknown, arg: string, rules: JsonRules = {}): JsonValue {
  return checkedWalk(value, arg, true, rules.text === true);
}

/**
 * Throws as {@link toJson} would, and copies nothing: `JSON.stringify(value)`
 * then carries `value` exactly.
 */
export function assertJson(value: unknown, arg: string, rules: JsonRules = {}): void {
  checkedWalk(value, arg, false, rules.text === true);
}

/** Whether `text` is one the stores keep exactly: well-formed, and free of NUL. */
export function isStoreText(text: string): boolean {
  return !LONE_SURROGATE.test(text) && !text.includes('\0');
}

/** Whether `text` is well-formed UTF-16: no surrogate that is not half of a pair. */
export function isWellFormed(text: string): boolean {
  return !LONE_SURROGATE.test(text);
}

/** With the `u` flag a surrogate range matches only a surrogate that is not half of a pair. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** Where a value stops being JSON; its path is gathered while the walk unwinds, so a value that is fine builds none. */
class NotJson extends Error {
  readonly path: (string | number)[] = [];
  constructor(readonly what: string) {
    super(what);
  }
}

interface Walk {
  readonly seen: Set<object>;
  readonly clone: boolean;
  readonly text: boolean;
}

function checkedWalk(value: unknown, arg: string, clone: boolean, text: boolean): JsonValue {
  try {
    return walk(value, { seen: new Set(), clone, text }, 0);
  } catch (caught) {
    // Anything else came from the caller's own code (a Proxy trap asked for keys or the prototype): refused all the same.
    const error = caught instanceof NotJson ? caught : new NotJson('an object whose keys or prototype cannot be read (a Proxy trap threw)');
    const path = error.path.map((step) => (typeof step === 'number' ? `[${step}]` : `.${step}`)).join('');
    throw unserializable(arg + path, error.what);
  }
}

/** Checks `value` all the way down; with `clone`, returns a deep frozen copy, otherwise `value` itself. */
function walk(value: unknown, w: Walk, depth: number): JsonValue {
  switch (typeof value) {
    case 'string':
      if (w.text && !isStoreText(value)) throw new NotJson(badText(value));
      return value;
    case 'boolean':
      return value;
    case 'number':
      if (Object.is(value, -0)) throw new NotJson('-0 (JSON has no negative zero)');
      if (Number.isFinite(value)) return value;
      break;
    case 'object': {
      if (value === null) return null;
      if (depth >= MAX_JSON_DEPTH) throw new NotJson(`a value nested deeper than ${MAX_JSON_DEPTH} levels`);
      if (w.seen.has(value)) throw new NotJson('a cycle');
      if (Array.isArray(value)) {
        w.seen.add(value);
        const out: JsonValue[] | undefined = w.clone ? new Array<JsonValue>(value.length) : undefined;
        for (let i = 0; i < value.length; i++) {
          const item = step(() => value[i] as unknown, i, w, depth);
          if (out !== undefined) out[i] = item;
        }
        w.seen.delete(value);
        return out !== undefined ? Object.freeze(out) : value as JsonValue;
      }
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) throw new NotJson(`an instance of ${(value as { constructor?: { name?: string } }).constructor?.name ?? 'a class'}`);
      if (Object.getOwnPropertySymbols(value).length > 0) throw new NotJson('an object with symbol-keyed properties (JSON drops them)');
      w.seen.add(value);
      const out: Record<string, JsonValue> | undefined = w.clone ? {} : undefined;
      for (const key of Object.keys(value)) {
        if (w.text && !isStoreText(key)) throw new NotJson(`a property name that is ${badText(key)}`);
        const item = step(() => (value as Record<string, unknown>)[key], key, w, depth);
        // defineProperty, not assignment: a "__proto__" key stays an ordinary key.
        if (out !== undefined) Object.defineProperty(out, key, { value: item, enumerable: true });
      }
      w.seen.delete(value);
      return out !== undefined ? Object.freeze(out) : value as JsonValue;
    }
    default:
      break;
  }
  throw new NotJson(describeValue(value));
}

/** One element or property, read through `read` (a getter or Proxy trap may throw): a refusal below it gets its index or name prepended to the path. */
function step(read: () => unknown, at: string | number, w: Walk, depth: number): JsonValue {
  try {
    let item: unknown;
    try {
      item = read();
    } catch {
      throw new NotJson('a property whose getter (or Proxy trap) throws');
    }
    return walk(item, w, depth + 1);
  } catch (error) {
    if (error instanceof NotJson) error.path.unshift(at);
    throw error;
  }
}

function badText(text: string): string {
  return !LONE_SURROGATE.test(text) ? 'a string holding NUL (\\u0000), which PostgreSQL cannot keep' : 'a string with a lone surrogate (not well-formed UTF-16)';
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
