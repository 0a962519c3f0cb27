import { ClosedError, HeraldError } from '../core/errors.js';
import { assertKey, freezeMeta } from '../core/assert.js';
import type { Meta } from '../core/types.js';

/** A change of a batch, as an outbox writes it. */
export interface BatchedChange {
  readonly key: string;
  readonly oldValue: unknown;
  readonly newValue: unknown;
  readonly meta: Meta;
}

/** What a batch needs of its hub: made by the hub for each batch it defers. @internal */
export interface BatchTarget {
  isClosed(): boolean;
  /** Whether the hub has a backplane: only then can an outbox announce a batch to the other nodes. */
  readonly clustered: boolean;
  /** Change detection, contained: an `equals` that throws counts as changed. */
  unchanged(oldValue: unknown, newValue: unknown): boolean;
  /** Throws what `notify` would throw for a change the backplane cannot carry. */
  assertEncodable(key: string, oldValue: unknown, newValue: unknown, meta: Meta): void;
  /**
   * Announces a batch as one: every change is checked (and, on a clustered
   * hub, encoded) before any is delivered, so a failure leaves none of them
   * announced. `localOnly` delivers them on this node only. Returns how many
   * were announced (those `equals` calls unchanged are skipped and counted).
   */
  announceAll(changes: readonly BatchedChange[], localOnly: boolean): number;
}

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
  readonly #target: BatchTarget;
  readonly #changes = new Map<string, Buffered>();
  #state: 'open' | 'committed' | 'discarded' = 'open';
  /** Set when an outbox in the transaction announces the batch to the other nodes. */
  #outboxed = false;

  /** @internal Made by {@link ObserverManager.defer}. */
  constructor(target: BatchTarget) {
    this.#target = target;
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
    this.#target.assertEncodable(key, oldValue, newValue, frozen);
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
    if (this.#target.isClosed()) throw new ClosedError('cannot `commit`: the hub is closed');
    this.#state = 'committed';
    const changes: BatchedChange[] = [];
    for (const [key, { oldValue, newValue, meta }] of this.#changes) changes.push({ key, oldValue, newValue, meta });
    this.#changes.clear();
    return this.#target.announceAll(changes, this.#outboxed);
  }

  /**
   * For a transactional outbox (`herald/postgres` uses it): hands over the
   * batch's changes, leaving out keys back at their first value, so that
   * they can be written in the same transaction as the data. From then on
   * `commit()` delivers them on this node only: the outbox announces them to
   * the other nodes. Returns `undefined`, and changes nothing, on a hub
   * without a backplane, where `commit()` announces as usual.
   * @throws HeraldError `HERALD_SETTLED` if the batch is settled.
   */
  takeForOutbox(): BatchedChange[] | undefined {
    this.#assertOpen('takeForOutbox');
    if (!this.#target.clustered) return undefined;
    this.#outboxed = true;
    const changes: BatchedChange[] = [];
    for (const [key, { oldValue, newValue, meta }] of this.#changes) {
      if (!this.#target.unchanged(oldValue, newValue)) changes.push({ key, oldValue, newValue, meta });
    }
    return changes;
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
