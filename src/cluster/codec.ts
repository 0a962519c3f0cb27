import { describeValue, HeraldError } from '../errors.js';
import type { Meta } from '../types.js';

/** A change as it crosses the wire between nodes. */
export interface WireChange {
  /** The publishing node's id. */
  readonly origin: string;
  /** The publishing node's message number: 1, 2, 3, ... in publish order. */
  readonly n: number;
  readonly key: string;
  readonly oldValue: unknown;
  readonly newValue: unknown;
  readonly meta: Meta;
  /** When the origin's `notify` accepted it, epoch milliseconds. */
  readonly at: number;
}

/**
 * How changes cross the wire. `encode` throws a `HeraldError` with code
 * `HERALD_UNSERIALIZABLE` for a value it cannot carry faithfully; `decode`
 * may throw on bytes it does not understand (they are counted as malformed).
 */
export interface Codec {
  readonly name: string;
  encode(change: WireChange): Uint8Array | string;
  decode(data: Uint8Array): WireChange;
}

const FIELDS = ['oldValue', 'newValue', 'meta'] as const;

/**
 * JSON, strictly: a value JSON would silently drop or change (a function,
 * a symbol, a BigInt, `undefined` inside an object or array, NaN, a Date or
 * another class instance, a cycle) fails `notify` instead. `undefined` as a
 * whole `oldValue` or `newValue` travels as absent and arrives as `undefined`.
 */
export const jsonCodec: Codec = {
  name: 'json',
  encode(change) {
    const wire: Record<string, unknown> = { o: change.origin, n: change.n, k: change.key, t: change.at };
    if (change.oldValue !== undefined) wire['a'] = change.oldValue;
    if (change.newValue !== undefined) wire['b'] = change.newValue;
    if (Object.keys(change.meta).length > 0) wire['m'] = change.meta;
    let field = '';
    try {
      return JSON.stringify(wire, function (this: unknown, name, value: unknown) {
        if (this === wire) field = name === 'a' ? 'oldValue' : name === 'b' ? 'newValue' : name === 'm' ? 'meta' : name;
        return strict(this, name, value, change.key, field);
      });
    } catch (error) {
      if (error instanceof HeraldError) throw error;
      // JSON.stringify throws a TypeError on a cycle.
      throw new HeraldError('HERALD_UNSERIALIZABLE', `\`${field || FIELDS.join('/')}\` of the change of ${JSON.stringify(change.key)} cannot be sent as JSON: ${(error as Error).message}`, { cause: error });
    }
  },
  decode(data) {
    const wire = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8')) as Record<string, unknown>;
    if (typeof wire !== 'object' || wire === null) throw new TypeError('not a herald change');
    return {
      origin: wire['o'] as string,
      n: wire['n'] as number,
      key: wire['k'] as string,
      oldValue: wire['a'],
      newValue: wire['b'],
      meta: (wire['m'] ?? {}) as Meta,
      at: wire['t'] as number,
    };
  },
};

/** The replacer of {@link jsonCodec}: refuses what JSON would drop or change. */
function strict(holder: unknown, name: string, value: unknown, key: string, field: string): unknown {
  const original = (holder as Record<string, unknown>)[name];
  // A value with a toJSON (a Date, a class instance) reaches the replacer already converted.
  if (original === value) {
    switch (typeof value) {
      case 'string':
      case 'boolean':
        return value;
      case 'number':
        if (Number.isFinite(value)) return value;
        break;
      case 'object': {
        if (value === null || Array.isArray(value)) return value;
        const proto: unknown = Object.getPrototypeOf(value);
        if (proto === Object.prototype || proto === null) return value;
        break;
      }
      default:
        break;
    }
  }
  const what = typeof original === 'object' && original !== null && !Array.isArray(original)
    ? `an instance of ${(original).constructor?.name ?? 'a class'}`
    : describeValue(original);
  throw new HeraldError('HERALD_UNSERIALIZABLE', `\`${field}\` of the change of ${JSON.stringify(key)} cannot be sent as JSON: it holds ${what}`);
}
