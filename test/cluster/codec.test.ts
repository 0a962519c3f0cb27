import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { jsonCodec, type WireChange } from '../../src/index.js';

const change = (oldValue: unknown, newValue: unknown, meta: Record<string, unknown> = {}): WireChange =>
  ({ origin: 'node-1', n: 7, key: 'cart/7/total', oldValue, newValue, meta, at: 1_700_000_000_000 });

const roundTrip = (c: WireChange): WireChange => {
  const data = jsonCodec.encode(c);
  return jsonCodec.decode(typeof data === 'string' ? Buffer.from(data) : data);
};

describe('jsonCodec', () => {
  test('every JSON value, and undefined as a whole value, crosses the wire unchanged', () => {
    // JSON has no -0, and the codec refuses it (the next test): the values here are JSON's own, -0 made 0.
    const json = fc.jsonValue().map((v) => JSON.parse(JSON.stringify(v)) as unknown);
    const value = fc.oneof(json, fc.constant(undefined));
    fc.assert(fc.property(value, value, fc.dictionary(fc.string(), json), (oldValue, newValue, meta) => {
      const expected = JSON.parse(JSON.stringify({ oldValue, newValue, meta })) as { oldValue: unknown; newValue: unknown; meta: unknown };
      const decoded = roundTrip(change(oldValue, newValue, meta));
      assert.deepEqual(decoded, { ...change(expected.oldValue, expected.newValue, expected.meta as Record<string, unknown>) });
    }));
  });

  test('a value JSON would drop or change is refused with HERALD_UNSERIALIZABLE, naming where it is', () => {
    const cycle: Record<string, unknown> = {};
    cycle['self'] = cycle;
    const cases: [unknown, string][] = [
      [Number.NaN, '`newValue`'], [Infinity, '`newValue`'], [-0, '`newValue` must be a JSON value (null, boolean, finite number, string, array or plain object), got -0'], [1n, '`newValue`'], [() => 1, '`newValue`'], [Symbol('s'), '`newValue`'],
      [new Date(0), '`newValue` must be a JSON value (null, boolean, finite number, string, array or plain object), got an instance of Date'],
      [{ items: [1, undefined] }, '`newValue.items[1]`'], [{ a: { b: undefined } }, '`newValue.a.b`'], [cycle, '`newValue.self`'],
    ];
    for (const [value, where] of cases) {
      assert.throws(() => jsonCodec.encode(change(1, value)), (error: Error & { code?: string }) =>
        error.code === 'HERALD_UNSERIALIZABLE' && error.message.includes(where), `refuses ${String(where)}`);
    }
    assert.throws(() => jsonCodec.encode(change(1, 2, { when: new Date(0) })), { code: 'HERALD_UNSERIALIZABLE', message: /`meta\.when`/ });
  });

  test('bytes that are not a herald change fail to decode', () => {
    assert.throws(() => jsonCodec.decode(Buffer.from('not json')));
    assert.throws(() => jsonCodec.decode(Buffer.from('42')));
  });
});
