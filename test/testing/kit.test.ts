import assert from 'node:assert/strict';
import { AssertionError } from 'node:assert';
import { test } from 'node:test';
import { ObserverManager, type Change } from '../../src/index.js';
import { collect, expectNoChange, nextChange } from '../../src/testing.js';

function createHub(t: { after: (fn: () => unknown) => void }): ObserverManager {
  const hub = new ObserverManager({ sweepIntervalMs: 0 });
  t.after(() => hub.close());
  return hub;
}

test('nextChange() - resolves with the next change that passes the filter, then stops observing', async (t) => {
  const hub = createHub(t);
  const next = nextChange<number>(hub, 'kit/a', { filter: (c) => c.newValue > 1 });
  hub.notify('kit/a', 0, 1);
  hub.notify('kit/a', 1, 2);
  assert.equal((await next).newValue, 2);
  assert.equal(hub.observerCount('kit/a'), 0);
});

test('nextChange() - rejects with HERALD_TIMEOUT saying what it waited for', async (t) => {
  const hub = createHub(t);
  await assert.rejects(nextChange(hub, 'kit/never', { timeoutMs: 10 }), {
    code: 'HERALD_TIMEOUT',
    message: 'nextChange(): waited 10 ms for a change of "kit/never", and none came',
  });
  assert.equal(hub.observerCount('kit/never'), 0);
});

test('collect() - records changes in order until stop()', async (t) => {
  const hub = createHub(t);
  const seen = collect<number>(hub, 'kit/c');
  hub.notify('kit/c', 0, 1);
  hub.notify('kit/c', 1, 2);
  await hub.drain();
  assert.deepEqual(seen.values, [1, 2]);
  assert.equal(seen.stop().length, 2);
  hub.notify('kit/c', 2, 3);
  await hub.drain();
  assert.deepEqual(seen.values, [1, 2]);
});

test('expectNoChange() - fails, listing what arrived, when the action causes a change', async (t) => {
  const hub = createHub(t);
  await assert.rejects(expectNoChange(hub, 'kit/n', () => hub.notify('kit/n', 0, 1)), (error: unknown) => {
    assert.ok(error instanceof AssertionError);
    assert.match(error.message, /expected no change of "kit\/n", but 1 arrived/);
    assert.deepEqual((error.actual as Change[]).map((c) => [c.key, c.oldValue, c.newValue]), [['kit/n', 0, 1]], 'what arrived is listed');
    return true;
  });
  await expectNoChange(hub, 'kit/n', () => hub.notify('kit/other', 0, 1));
  assert.equal(hub.observerCount('kit/n'), 0);
});
