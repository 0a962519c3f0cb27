import { assertJson } from '../core/json.js';
import type { Meta } from '../core/types.js';

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
  /** As `decode(data.subarray(offset))`, without the copy of a view: the backplane calls it when present. */
  decodeFrom?(data: Uint8Array, offset: number): WireChange;
}

/**
 * JSON, strictly: a value JSON would silently drop or change (a function,
 * a symbol, a BigInt, `undefined` inside an object or array, NaN, a Date or
 * another class instance, a cycle, -0, symbol-keyed properties, nesting past
 * 512 levels) fails `notify` with `HERALD_UNSERIALIZABLE`
 * instead. `undefined` as a whole `oldValue` or `newValue` travels as absent
 * and arrives as `undefined`.
 */
export const jsonCodec: Codec = {
  name: 'json',
  encode(change) {
    // Built by hand: the envelope's fields are known, and each value is checked before it is written.
    let json = `{"o":${JSON.stringify(change.origin)},"n":${change.n},"k":${JSON.stringify(change.key)},"t":${change.at}`;
    if (change.oldValue !== undefined) json += `,"a":${checked(change.oldValue, 'oldValue')}`;
    if (change.newValue !== undefined) json += `,"b":${checked(change.newValue, 'newValue')}`;
    if (hasKeys(change.meta)) json += `,"m":${checked(change.meta, 'meta')}`;
    return `${json}}`;
  },
  decode(data) {
    return fromJson(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
  },
  decodeFrom(data, offset) {
    const buffer = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    return fromJson(buffer.toString('utf8', offset));
  },
};

/** A change from the JSON the encoder wrote. */
function fromJson(text: string): WireChange {
  const wire = JSON.parse(text) as Record<string, unknown>;
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
}

function hasKeys(object: object): boolean {
  for (const key in object) if (Object.hasOwn(object, key)) return true;
  return false;
}

/** `value` as JSON, once it is known to be JSON all the way down; finite numbers and booleans, common and trivial, need no walk. */
function checked(value: unknown, arg: string): string {
  if ((typeof value === 'number' && Number.isFinite(value) && !Object.is(value, -0)) || typeof value === 'boolean') return String(value);
  if (typeof value !== 'string') assertJson(value, arg);
  return JSON.stringify(value);
}
