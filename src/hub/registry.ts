import type { ObserverCallback } from '../core/types.js';
import { ACTIVE, type Observer, type ObserverHost } from './observer.js';
import type { PatternNode } from './pattern.js';

/** Lists this short are never compacted: the tombstones cost less than the copy. */
const MIN_COMPACT_HOLES = 32;

/**
 * Stands in `fns` for an observer that needs more than a plain call: removed,
 * busy with a returned promise, or probed by `isAlive`. @internal
 */
export const SLOW: ObserverCallback = () => {};

/**
 * The observers of one key (or one pattern) in registration order, with
 * their callbacks in a parallel dense array that is all the delivery loop
 * reads for an idle observer.
 *
 * Removal is O(1): the observer stays as a tombstone (`SLOW` in `fns`, state
 * no longer ACTIVE) and both arrays are compacted in place once tombstones
 * reach a quarter of the living — but never while a dispatch job of this list
 * is pending, so a job can hold the list and its length at notify time as its
 * snapshot: later additions land past that length, removals are tombstones.
 * @internal
 */
export class ObserverList {
  readonly name: string;
  readonly host: ObserverHost;
  /** Set for a pattern's list: the trie node that holds it. */
  readonly pattern: PatternNode | undefined;
  items: Observer[] = [];
  fns: ObserverCallback[] = [];
  /** Living observers. */
  size = 0;
  /** Dispatch jobs of this list queued so far, and finished so far. */
  enqueued = 0;
  dispatched = 0;
  #compactWhenIdle = false;

  constructor(name: string, host: ObserverHost, pattern?: PatternNode) {
    this.name = name;
    this.host = host;
    this.pattern = pattern;
  }

  add(observer: Observer, callback: ObserverCallback): void {
    observer.index = this.items.length;
    observer.joinMark = this.enqueued;
    this.items.push(observer);
    this.fns.push(observer.state === ACTIVE ? callback : SLOW);
    this.size++;
  }

  /** The observer's callback, wherever it is kept. */
  callbackOf(observer: Observer): ObserverCallback {
    return observer.ext?.callback ?? this.fns[observer.index]!;
  }

  /** Call after the observer's state has lost ACTIVE. */
  delete(observer: Observer): void {
    this.fns[observer.index] = SLOW;
    observer.leaveMark = this.enqueued;
    this.size--;
    const holes = this.items.length - this.size;
    // A quarter of tombstones at most: the delivery loop visits them too. Still O(1) amortised per removal.
    if (holes >= MIN_COMPACT_HOLES && holes * 4 > this.size) {
      if (this.enqueued === this.dispatched) this.#compact();
      else this.#compactWhenIdle = true;
    }
  }

  /** Points the slot of an observer with an ext at its callback when it may take the fast path, at `SLOW` otherwise. */
  refresh(observer: Observer): void {
    this.fns[observer.index] = observer.state === ACTIVE ? observer.ext!.callback! : SLOW;
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

  /** The living observers, in registration order. */
  living(): Observer[] {
    return this.items.filter((observer) => (observer.state & ACTIVE) !== 0);
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
