import { assertNever } from '../core/assert.js';
import type { Change, OverflowPolicy } from '../core/types.js';

/**
 * What {@link Mailbox.offer} did with a change:
 * - `queued`: the queue grew by one;
 * - `dropped-oldest`: the queue was full and its oldest change was dropped to make room
 *   (`drop-oldest`, or `coalesce` with nothing of that key to merge into);
 * - `dropped-newest`: the queue was full and the offered change was dropped (`drop-newest`, or a limit of 0);
 * - `coalesced`: merged into the pending change of its key, which moved to the back; the length is unchanged;
 * - `coalesced-away`: merged, and back where that pending change started: both are gone, the queue shrank by one;
 * - `disconnect`: the queue was full and the policy is `disconnect`: the observer must go;
 * - `cancelled`: the merge's `equals` emptied the queue (it removed the observer): the change goes nowhere.
 */
export type Admission = 'queued' | 'dropped-oldest' | 'dropped-newest' | 'coalesced' | 'coalesced-away' | 'disconnect' | 'cancelled';

/** Change detection for merges; the mailbox keeps what it throws for its owner to report. */
export type Equals = (oldValue: unknown, newValue: unknown) => boolean;

/**
 * One observer's bounded queue of pending changes (the one in flight is not
 * counted), with its overflow policy. Every operation is O(1): a merge under
 * `coalesce` finds the pending change of its key through an index instead of
 * scanning, and leaves a hole where that change was rather than splicing.
 */
export class Mailbox {
  readonly limit: number;
  readonly policy: OverflowPolicy;
  /** Slots from `#head` on; a hole (undefined) is a change merged away. */
  #slots: (Change | undefined)[] = [];
  #head = 0;
  /** Absolute position of `#slots[0]`: positions stay valid when the consumed prefix is reclaimed. */
  #base = 0;
  #length = 0;
  /** Under `coalesce`: key → absolute position of its newest pending change. */
  readonly #newest: Map<string, number> | undefined;
  /** Under `coalesce`: for each slot, the absolute position of the previous pending change of its key, or -1. */
  #previous: number[] | undefined;
  /** Bumped by {@link clear}: a merge whose `equals` cleared the queue (by removing its observer) stops there. */
  #generation = 0;
  /** Bumped by every change of the queue: a merge whose `equals` changed it otherwise starts over. */
  #version = 0;
  /** What the last merge's `equals` threw, for the owner to report; cleared by {@link takeError}. */
  #error: { readonly error: unknown } | undefined = undefined;

  constructor(limit: number, policy: OverflowPolicy) {
    this.limit = limit;
    this.policy = policy;
    if (policy === 'coalesce') {
      this.#newest = new Map();
      this.#previous = [];
    }
  }

  /** Pending changes. */
  get length(): number {
    return this.#length;
  }

  /** Admits a change, applying the overflow policy when the queue is full. */
  offer(change: Change, equals: Equals): Admission {
    if (this.#length < this.limit) {
      this.#push(change);
      return 'queued';
    }
    const policy = this.policy;
    switch (policy) {
      case 'drop-oldest':
        return this.#replaceOldest(change);
      case 'drop-newest':
        return 'dropped-newest';
      case 'coalesce':
        return this.#merge(change, equals) ?? this.#replaceOldest(change);
      case 'disconnect':
        return 'disconnect';
      default:
        return assertNever(policy);
    }
  }

  /** The oldest pending change, removed; undefined when empty. */
  shift(): Change | undefined {
    const slots = this.#slots;
    while (this.#head < slots.length) {
      const position = this.#head;
      const change = slots[position];
      slots[position] = undefined;
      this.#head++;
      this.#version++;
      if (change === undefined) continue;
      this.#length--;
      if (this.#newest !== undefined && this.#newest.get(change.key) === this.#base + position) this.#newest.delete(change.key);
      this.#reclaim();
      return change;
    }
    return undefined;
  }

  /** Empties the queue; returns how many changes it held. */
  clear(): number {
    const count = this.#length;
    this.#generation++;
    this.#slots = [];
    this.#head = 0;
    this.#length = 0;
    this.#newest?.clear();
    if (this.#previous !== undefined) this.#previous = [];
    return count;
  }

  /** What a merge's `equals` threw since the last call, if anything. */
  takeError(): { readonly error: unknown } | undefined {
    const error = this.#error;
    this.#error = undefined;
    return error;
  }

  #push(change: Change): void {
    const position = this.#base + this.#slots.length;
    this.#version++;
    this.#slots.push(change);
    this.#length++;
    if (this.#newest !== undefined) {
      this.#previous!.push(this.#newest.get(change.key) ?? -1);
      this.#newest.set(change.key, position);
    }
  }

  #replaceOldest(change: Change): Admission {
    if (this.#length === 0) return 'dropped-newest'; // a limit of 0 keeps nothing
    this.shift();
    this.#push(change);
    return 'dropped-oldest';
  }

  /**
   * Merges `change` into the newest pending change of its key: oldest
   * `oldValue`, newest `newValue`, `meta`, `seq` and `at`. The merged change
   * moves to the back, so `seq` still grows along the queue. Undefined when
   * no pending change has that key.
   */
  #merge(change: Change, equals: Equals): Admission | undefined {
    const position = this.#newest!.get(change.key);
    if (position === undefined) return undefined;
    const pending = this.#slots[position - this.#base]!;
    const generation = this.#generation;
    const version = this.#version;
    let backToStart: boolean;
    try {
      backToStart = equals(pending.oldValue, change.newValue);
    } catch (error) {
      // Contained: the change is kept, merged, as if the values differed.
      this.#error = { error };
      backToStart = false;
    }
    // `equals` is the user's code: it may have removed the observer, and with it everything queued here.
    if (generation !== this.#generation) return 'cancelled';
    if (version !== this.#version) return this.offer(change, equals);
    const slot = position - this.#base;
    this.#slots[slot] = undefined;
    this.#length--;
    const previous = this.#previous![slot]!;
    if (previous >= this.#base + this.#head && this.#slots[previous - this.#base] !== undefined) this.#newest!.set(change.key, previous);
    else this.#newest!.delete(change.key);
    if (backToStart) return 'coalesced-away';
    this.#push(Object.freeze({ ...change, oldValue: pending.oldValue }));
    return 'coalesced';
  }

  /** Reclaims the consumed prefix once it outweighs what is left: O(1) amortised. */
  #reclaim(): void {
    if (this.#head < 64 || this.#head * 2 < this.#slots.length) return;
    this.#slots = this.#slots.slice(this.#head);
    if (this.#previous !== undefined) this.#previous = this.#previous.slice(this.#head);
    this.#base += this.#head;
    this.#head = 0;
  }
}
