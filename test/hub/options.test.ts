import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ObserverManager, SessionStore } from '../../src/index.js';
import { RedisBackplane } from '../../src/redis.js';

const TOO_LONG = [2 ** 31, 2 ** 31 + 5, 2 ** 40, Number.MAX_SAFE_INTEGER, 1.5, -1, NaN];

test('new ObserverManager() - timer options a Node timer cannot honour (2^31 ms or more, fractions) are refused with the argument named', () => {
  for (const value of TOO_LONG) {
    assert.throws(() => new ObserverManager({ sweepIntervalMs: value }), { code: 'HERALD_INVALID_OPTION', message: /options\.sweepIntervalMs/ }, `sweepIntervalMs ${value}`);
    assert.throws(() => new ObserverManager({ callbackTimeoutMs: value }), { code: 'HERALD_INVALID_OPTION', message: /options\.callbackTimeoutMs/ }, `callbackTimeoutMs ${value}`);
  }
  assert.throws(() => new ObserverManager({ callbackTimeoutMs: 0 }), { code: 'HERALD_INVALID_OPTION' });
  assert.throws(() => new ObserverManager({ sweepIntervalMs: Infinity }), { code: 'HERALD_INVALID_OPTION' });
  // The edges that are honoured: the longest timer, no sweep, and no timeout at all.
  for (const options of [{ sweepIntervalMs: 2 ** 31 - 1, callbackTimeoutMs: 2 ** 31 - 1 }, { sweepIntervalMs: 0, callbackTimeoutMs: Infinity }]) {
    void new ObserverManager(options).close();
  }
});

test('timer options of stores and backplanes - 2^31 ms or more is refused, nothing is started', () => {
  const hub = new ObserverManager({ sweepIntervalMs: 0 });
  try {
    assert.throws(() => new SessionStore({ hub, expiryCheckMs: 2 ** 31 }), { code: 'HERALD_INVALID_OPTION', message: /options\.expiryCheckMs/ });
    for (const [options, arg] of [
      [{ closeTimeoutMs: 2 ** 31 }, 'options.closeTimeoutMs'],
      [{ reconnect: { maxDelayMs: 2 ** 31 } }, 'options.reconnect.maxDelayMs'],
      [{ reconnect: { initialDelayMs: 2 ** 32 } }, 'options.reconnect.initialDelayMs'],
    ] as const) {
      assert.throws(() => new RedisBackplane({ url: 'redis://127.0.0.1:1', ...options }), { code: 'HERALD_INVALID_OPTION', message: new RegExp(arg.replace('.', '\\.')) });
    }
  } finally {
    void hub.close();
  }
});
