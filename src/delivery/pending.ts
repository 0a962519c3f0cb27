import { ClosedError, HeraldError } from '../errors.js';
import { assertKey, freezeMeta } from '../internal/assert.js';
import type { Meta } from '../types.js';
import type { ObserverManager } from '../hub/observer-manager.js';
import { localDelivery } from '../internal/hooks.js';

/** A change of a batch, as an outbox writes it. @internal */
export interface BatchedChange {
  readonly key: string;
  readonly oldValue: unknown;
  readonly newValue: unknown;
  readonly meta: Meta;
}

/**
 * Hands over a batch's changes for an outbox written in the same
 * transaction, and marks the batch so that its `commit()` delivers them on
 * this node only: the outbox announces them to the others. Unchanged keys
 * are left out. Undefined when the hub has no backplane. @internal
 */
export let takeForOutbox: (pending: PendingNotifications) => BatchedChange[] | undefined;

interface Buffered {
  readonly oldValue: unknown;
  newValue: unknown;
  meta: Meta;
}

/**
 * Notifications held back until a commit: made by {@link ObserverManager.defer}.
 * `notify` buffers (coalesced per key: the first `oldValue`, the last
 * `newValue` and `meta`); `commit()` announces them in the order their keys
 * were first touched, skipping any key that ended where it began; `discard()`
 * drops them, and so does disposing a batch that was never committed.
 * A settled batch refuses further calls with `HERALD_SETTLED`.
 */
export class PendingNotifications implements Disposable {
  readonly #hub: ObserverManager;
  readonly #changes = new Map<string, Buffered>();
  #state: 'open' | 'committed' | 'discarded' = 'open';
  /** Set when an outbox in the transaction announces the batch to the other nodes. */
  #outboxed = false;

  static {
    takeForOutbox = (pending) => {
      const local = localDelivery.get(pending.#hub);
      if (local === undefined) return undefined;
      pending.#assertOpen('commit');
      pending.#outboxed = true;
      const changes: BatchedChange[] = [];
      for (const [key, { oldValue, newValue, meta }] of pending.#changes) {
        if (!local.unchanged(oldValue, newValue)) changes.push({ key, oldValue, newValue, meta });
      }
      return changes;
    };
  }

  /** @internal Made by {@link ObserverManager.defer}. */
  constructor(hub: ObserverManager) {
    this.#hub = hub;
  }

  /** Keys with a buffered change. */
  get size(): number {
    return this.#changes.size;
  }

  /** `'open'` until `commit()` or `discard()`. */
  get state(): 'open' | 'committed' | 'discarded' {
    return this.#state;
  }

  /** Buffers a change; validated now, so a later `commit()` cannot fail on it. */
  notify(key: string, oldValue: unknown, newValue: unknown, meta?: Readonly<Record<string, unknown>>): void {
    this.#assertOpen('notify');
    assertKey(key);
    const frozen = freezeMeta(meta);
    this.#hub.backplane?.assertEncodable(key, oldValue, newValue, frozen);
    const buffered = this.#changes.get(key);
    if (buffered === undefined) {
      this.#changes.set(key, { oldValue, newValue, meta: frozen });
    } else {
      buffered.newValue = newValue;
      buffered.meta = frozen;
    }
  }

  /**
   * Announces the buffered changes through the hub and settles the batch.
   * Returns how many were announced (a key back at its first value is not).
   * @throws HeraldError `HERALD_CLOSED` if the hub is closed (nothing is announced), `HERALD_SETTLED` if already settled.
   */
  commit(): number {
    this.#assertOpen('commit');
    if (this.#hub.closed) throw new ClosedError('cannot `commit`: the hub is closed');
    this.#state = 'committed';
    let announced = 0;
    const local = this.#outboxed ? localDelivery.get(this.#hub) : undefined;
    for (const [key, { oldValue, newValue, meta }] of this.#changes) {
      if (local !== undefined ? local.notifyLocal(key, oldValue, newValue, meta) : this.#hub.notify(key, oldValue, newValue, meta)) announced++;
    }
    this.#changes.clear();
    return announced;
  }

  /** Drops the buffered changes and settles the batch. Idempotent once discarded. */
  discard(): void {
    if (this.#state === 'committed') this.#assertOpen('discard');
    this.#state = 'discarded';
    this.#changes.clear();
  }

  /** Discards the batch if it was never committed. */
  [Symbol.dispose](): void {
    if (this.#state === 'open') this.discard();
  }

  #assertOpen(method: string): void {
    if (this.#state !== 'open') {
      throw new HeraldError('HERALD_SETTLED', `cannot \`${method}\`: the pending batch is already ${this.#state}`);
    }
  }
}
