import type { ObserverCallback } from '../core/types.js';
import { ACTIVE, type Observer, type ObserverHost } from './observer.js';

/** Lists this short are never compacted: the tombstones cost less than the copy. */
const MIN_COMPACT_HOLES = 32;

/**
 * Stands in `fns` for an observer that needs more than a plain call: removed,
 * busy, or with an ext (a queue bound, a probe, ...) that the slow path reads.
 */
export const SLOW: ObserverCallback = () => {};

/**
 * The observers of one key (or one pattern) in registration order, with
 * their callbacks in a parallel dense array that is all the delivery loop
 * reads for an idle plain observer.
 *
 * Removal is O(1): the observer stays as a tombstone (`SLOW` in `fns`, state
 * no longer ACTIVE) and both arrays are compacted in place once tombstones
 * reach a quarter of the living — but never while a dispatch job of this list
 * is pending, so a job can hold the list and its length at notify time as its
 * snapshot: later additions land past that length, removals are tombstones.
 * Only this class writes `fns`, and only into the slot of the observer it was
 * given, checked to be there: a stale index can never overwrite another's slot.
 */
export class ObserverList {
  /** The key, or the pattern. */
  readonly name: string;
  readonly isPattern: boolean;
  readonly host: ObserverHost;
  items: Observer[] = [];
  fns: ObserverCallback[] = [];
  /** Living observers. */
  size = 0;
  /** Dispatch jobs of this list queued so far, and finished so far. */
  enqueued = 0;
  dispatched = 0;
  #compactWhenIdle = false;

  constructor(name: string, isPattern: boolean, host: ObserverHost) {
    this.name = name;
    this.isPattern = isPattern;
    this.host = host;
  }

  add(observer: Observer, callback: ObserverCallback): void {
    observer.index = this.items.length;
    observer.joinMark = this.enqueued;
    this.items.push(observer);
    this.fns.push(observer.state === ACTIVE && observer.ext === undefined ? callback : SLOW);
    this.size++;
  }

  /** The callback of a living observer, wherever it is kept. */
  callbackOf(observer: Observer): ObserverCallback | undefined {
    if (observer.ext !== undefined) return observer.ext.callback;
    return this.holds(observer) ? this.fns[observer.index] : undefined;
  }

  /** Call after the observer's state has lost ACTIVE. */
  delete(observer: Observer): void {
    if (this.holds(observer)) this.fns[observer.index] = SLOW;
    observer.leaveMark = this.enqueued;
    this.size--;
    const holes = this.items.length - this.size;
    // A quarter of tombstones at most: the delivery loop visits them too. Still O(1) amortised per removal.
    if (holes >= MIN_COMPACT_HOLES && holes * 4 > this.size) {
      if (this.enqueued === this.dispatched) this.#compact();
      else this.#compactWhenIdle = true;
    }
  }

  /**
   * Moves a living plain observer's callback out of its slot (into the ext
   * it is given), so that the fast loop sends it down the slow path from now on.
   */
  toSlowPath(observer: Observer): void {
    if (this.holds(observer)) this.fns[observer.index] = SLOW;
  }

  /** Marks the end of one dispatch job of this list. */
  finishJob(): void {
    this.dispatched++;
    if (this.#compactWhenIdle && this.enqueued === this.dispatched) this.#compact();
  }

  /** Jobs of this list that included `observer` and have been dispatched. */
  visits(observer: Observer): number {
    const last = (observer.state & ACTIVE) !== 0 ? this.dispatched : Math.min(this.dispatched, observer.leaveMark);
    return Math.max(0, last - observer.joinMark);
  }

  /** The living observer with registration number `n`, found by binary search (items are sorted by `n`). */
  find(n: number): Observer | undefined {
    const items = this.items;
    let lo = 0;
    let hi = items.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const observer = items[mid]!;
      if (observer.n === n) return (observer.state & ACTIVE) !== 0 ? observer : undefined;
      if (observer.n < n) lo = mid + 1;
      else hi = mid - 1;
    }
    return undefined;
  }

  /** The first index in `items[from..to)` whose registration number is at least `n` (they are sorted by it), or `to`. */
  firstAtLeast(from: number, to: number, n: number): number {
    const items = this.items;
    let lo = from;
    let hi = to;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (items[mid]!.n < n) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The living observers, in registration order. */
  living(): Observer[] {
    return this.items.filter((observer) => (observer.state & ACTIVE) !== 0);
  }

  /** Whether this list holds `observer` (living, or a tombstone not yet compacted away). */
  holds(observer: Observer): boolean {
    return observer.list === this && this.items[observer.index] === observer;
  }

  /** In place: it runs only while no job of this list is pending, so nothing else holds these arrays. */
  #compact(): void {
    this.#compactWhenIdle = false;
    const { items, fns } = this;
    let kept = 0;
    for (let i = 0; i < items.length; i++) {
      const observer = items[i]!;
      if ((observer.state & ACTIVE) === 0) continue;
      if (i !== kept) {
        items[kept] = observer;
        fns[kept] = fns[i]!;
        observer.index = kept;
      }
      kept++;
    }
    items.length = kept;
    fns.length = kept;
  }
}
