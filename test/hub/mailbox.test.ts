import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { Change, OverflowPolicy } from '../../src/index.js';
import { Mailbox } from '../../src/delivery/mailbox.js';

const POLICIES: readonly OverflowPolicy[] = ['drop-oldest', 'drop-newest', 'coalesce', 'disconnect'];

/** The rules of DESIGN 2.1 rule 7, written as plainly as possible: an array scanned and spliced. */
class ReferenceQueue {
  items: Change[] = [];
  constructor(readonly limit: number, readonly policy: OverflowPolicy) {}

  offer(change: Change): string {
    if (this.items.length < this.limit) {
      this.items.push(change);
      return 'queued';
    }
    switch (this.policy) {
      case 'drop-newest': return 'dropped-newest';
      case 'disconnect': return 'disconnect';
      case 'coalesce': {
        for (let i = this.items.length - 1; i >= 0; i--) {
          const pending = this.items[i]!;
          if (pending.key !== change.key) continue;
          this.items.splice(i, 1);
          if (Object.is(pending.oldValue, change.newValue)) return 'coalesced-away';
          this.items.push({ ...change, oldValue: pending.oldValue });
          return 'coalesced';
        }
        return this.#replaceOldest(change);
      }
      case 'drop-oldest': return this.#replaceOldest(change);
    }
  }

  #replaceOldest(change: Change): string {
    if (this.items.length === 0) return 'dropped-newest';
    this.items.shift();
    this.items.push(change);
    return 'dropped-oldest';
  }
}

// Few keys and values, so that merges back to a start value (and merges into an older change of a key) are frequent.
const op = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('offer' as const), key: fc.constantFrom('a', 'b'), value: fc.integer({ min: 0, max: 2 }) }), weight: 8 },
  { arbitrary: fc.record({ kind: fc.constant('shift' as const) }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('clear' as const) }), weight: 1 },
);

for (const policy of POLICIES) {
  test(`Mailbox - under ${policy}, every admission, the order and the merged values match the plain rules, whatever the sequence`, () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 4 }), fc.array(op, { maxLength: 80 }), (limit, ops) => {
      const mailbox = new Mailbox(limit, policy);
      const reference = new ReferenceQueue(limit, policy);
      const last = new Map<string, number>();
      let seq = 0;
      for (const o of ops) {
        if (o.kind === 'offer') {
          const oldValue = last.get(o.key) ?? 0;
          last.set(o.key, o.value);
          const change: Change = Object.freeze({ key: o.key, oldValue, newValue: o.value, meta: {}, seq: ++seq, at: 0 });
          assert.equal(mailbox.offer(change, Object.is), reference.offer(change));
        } else if (o.kind === 'shift') {
          const got = mailbox.shift();
          const want = reference.items.shift();
          assert.deepEqual(got && [got.key, got.oldValue, got.newValue, got.seq], want && [want.key, want.oldValue, want.newValue, want.seq]);
        } else {
          assert.equal(mailbox.clear(), reference.items.length);
          reference.items = [];
        }
        assert.equal(mailbox.length, reference.items.length);
      }
    }), { numRuns: 1000 });
  });
}

test('Mailbox - a long overload under coalesce keeps one pending change per key and the seq order along the queue', () => {
  const mailbox = new Mailbox(100, 'coalesce');
  let seq = 0;
  for (let round = 0; round < 1000; round++) {
    for (let k = 0; k < 100; k++) mailbox.offer(Object.freeze({ key: `k${k}`, oldValue: round, newValue: round + 1, meta: {}, seq: ++seq, at: 0 }), Object.is);
  }
  assert.equal(mailbox.length, 100);
  let previous = 0;
  for (let change = mailbox.shift(); change !== undefined; change = mailbox.shift()) {
    assert.ok(change.seq > previous);
    previous = change.seq;
    assert.equal(change.oldValue, 0);
    assert.equal(change.newValue, 1000);
  }
});
