import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ObserverManager, type CloseReason, type OverflowPolicy, type Subscription } from '../../src/index.js';

const KEYS = ['a/1', 'a/2', 'b/1', 'constructor'];
const PATTERNS = ['a/*', '**'];
const POLICIES: OverflowPolicy[] = ['drop-oldest', 'drop-newest', 'coalesce', 'disconnect'];
type Behaviour = 'sync' | 'slow' | 'throw' | 'reject';

const command = fc.oneof(
  { weight: 3, arbitrary: fc.record({
    op: fc.constant('observe' as const),
    target: fc.oneof(fc.constantFrom(...KEYS).map((key) => ({ key, pattern: false })), fc.constantFrom(...PATTERNS).map((key) => ({ key, pattern: true }))),
    behaviour: fc.constantFrom<Behaviour>('sync', 'slow', 'throw', 'reject'),
    policy: fc.constantFrom(...POLICIES),
    limit: fc.integer({ min: 0, max: 3 }),
  }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('notify' as const), key: fc.constantFrom(...KEYS), value: fc.integer({ min: 0, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('unsubscribe' as const), index: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('abort' as const), index: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('settle' as const), index: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('tick' as const) }) },
);

interface Tracked {
  readonly sub: Subscription;
  readonly controller: AbortController;
  readonly key: string;
  readonly pattern: boolean;
  readonly seqs: number[];
  readonly gates: (() => void)[];
  removed: boolean;
  closeReasons: CloseReason[];
  deliveredAfterRemoval: number;
}

function matches(pattern: string, key: string): boolean {
  if (pattern === '**') return true;
  const [p, k] = [pattern.split('/'), key.split('/')];
  return p.length === k.length && p.every((s, i) => s === '*' || s === k[i]);
}

test('property - random observe/unsubscribe/abort/notify/settle sequences keep every invariant', async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(command, { maxLength: 60 }), async (commands) => {
        const hub = new ObserverManager({ sweepIntervalMs: 0, onError: () => {} });
        const tracked: Tracked[] = [];
        let releaseAll = false;
        for (const cmd of commands) {
          switch (cmd.op) {
            case 'observe': {
              const controller = new AbortController();
              const entry: Tracked = {
                sub: undefined as unknown as Subscription, controller, key: cmd.target.key, pattern: cmd.target.pattern,
                seqs: [], gates: [], removed: false, closeReasons: [], deliveredAfterRemoval: 0,
              };
              const callback = (change: { seq: number }): unknown => {
                if (entry.removed) entry.deliveredAfterRemoval++;
                entry.seqs.push(change.seq);
                switch (cmd.behaviour) {
                  case 'sync': return undefined;
                  case 'throw': throw new Error('observer failure');
                  case 'reject': return Promise.reject(new Error('async observer failure'));
                  case 'slow': return releaseAll ? undefined : new Promise<void>((resolve) => entry.gates.push(resolve));
                }
              };
              const options = {
                signal: controller.signal,
                queue: { limit: cmd.limit, overflow: cmd.policy },
                onClose: (reason: CloseReason) => { entry.removed = true; entry.closeReasons.push(reason); },
              };
              (entry as { sub: Subscription }).sub = cmd.target.pattern
                ? hub.observePattern(cmd.target.key, callback, options)
                : hub.observe(cmd.target.key, callback, options);
              tracked.push(entry);
              break;
            }
            case 'notify':
              hub.notify(cmd.key, -1, cmd.value);
              break;
            case 'unsubscribe': {
              const entry = tracked[cmd.index % Math.max(1, tracked.length)];
              if (entry !== undefined) entry.sub.unsubscribe();
              break;
            }
            case 'abort': {
              const entry = tracked[cmd.index % Math.max(1, tracked.length)];
              entry?.controller.abort();
              break;
            }
            case 'settle': {
              const entry = tracked[cmd.index % Math.max(1, tracked.length)];
              entry?.gates.shift()?.();
              break;
            }
            case 'tick':
              await Promise.resolve();
              break;
          }
          // keys() and observerCount() agree with the live handles after every step.
          const live = tracked.filter((e) => e.sub.active);
          assert.equal(hub.observerCount(), live.length);
          assert.deepEqual(new Set(hub.keys()), new Set(live.filter((e) => !e.pattern).map((e) => e.key)));
          for (const key of KEYS) {
            const expected = live.filter((e) => (e.pattern ? matches(e.key, key) : e.key === key)).length;
            assert.equal(hub.observerCount(key), expected);
          }
          assert.ok(live.every((e) => !e.removed) && tracked.every((e) => e.sub.active || e.removed));
        }
        releaseAll = true;
        for (const entry of tracked) while (entry.gates.length > 0) entry.gates.shift()!();
        await hub.drain();
        const stats = hub.getStats();
        assert.equal(stats.deliveries + stats.dropped + stats.coalesced + stats.cancelled, stats.fanOut, JSON.stringify(stats));
        assert.equal(stats.pending, 0);
        for (const entry of tracked) {
          assert.equal(entry.deliveredAfterRemoval, 0, 'no delivery after removal');
          assert.ok(entry.seqs.every((seq, i) => i === 0 || seq > entry.seqs[i - 1]!), `seq order: ${entry.seqs.join(',')}`);
          assert.ok(entry.closeReasons.length <= 1, 'onClose at most once');
        }
        await hub.close();
        assert.ok(tracked.every((e) => e.closeReasons.length === 1), 'onClose exactly once in the end');
        await new Promise((resolve) => setImmediate(resolve));
        assert.deepEqual(unhandled, []);
      }),
      { numRuns: 300 },
    );
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});
