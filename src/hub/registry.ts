import { ACTIVE, type Observer, type ObserverHost } from './observer.js';
import type { PatternNode } from './pattern.js';

/** Lists this short are never compacted: the tombstones cost less than the copy. */
const MIN_COMPACT_HOLES = 32;

/**
 * The observers of one key (or one pattern) in registration order.
 *
 * Removal is O(1): the observer stays in `items` as a tombstone (its state
 * no longer ACTIVE) and the array is rebuilt once tombstones outnumber the
 * living. It is rebuilt as a *new* array, never in place, so a snapshot taken
 * by `notify` (an array and its length then) stays valid while queued.
 * @internal
 */
export class ObserverList {
  readonly name: string;
  readonly host: ObserverHost;
  /** Set for a pattern's list: the trie node that holds it. */
  readonly pattern: PatternNode | undefined;
  items: Observer[] = [];
  /** Living observers. */
  size = 0;

  constructor(name: string, host: ObserverHost, pattern?: PatternNode) {
    this.name = name;
    this.host = host;
    this.pattern = pattern;
  }

  add(observer: Observer): void {
    observer.index = this.items.length;
    this.items.push(observer);
    this.size++;
  }

  /** Call after the observer's state has lost ACTIVE. */
  delete(): void {
    this.size--;
    const holes = this.items.length - this.size;
    if (holes >= MIN_COMPACT_HOLES && holes > this.size) this.#compact();
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

  #compact(): void {
    const next = this.living();
    for (let i = 0; i < next.length; i++) next[i]!.index = i;
    this.items = next;
  }
}
