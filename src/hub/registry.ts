import type { ObserverCallback } from '../core/types.js';
import { ACTIVE, parseId, type Observer, type ObserverHost } from './observer.js';
import { ObserverList } from './observer-list.js';
import { PatternTrie } from './pattern.js';

/** Told when a key or pattern gains its first observer (`wanted`) or loses its last: what a backplane subscribes to. */
export type InterestListener = (name: string, isPattern: boolean, wanted: boolean) => void;

/**
 * Who observes what: a list per key and a trie of pattern lists. Only lists
 * with a living observer are kept, so a key leaves no trace once its last
 * observer goes.
 */
export class Registry {
  readonly #host: ObserverHost;
  readonly #onInterest: InterestListener | undefined;
  readonly #keys = new Map<string, ObserverList>();
  readonly #patterns = new PatternTrie();
  /** Living pattern observers: while 0, a lookup never looks at the trie. */
  #patternObservers = 0;

  constructor(host: ObserverHost, onInterest: InterestListener | undefined) {
    this.#host = host;
    this.#onInterest = onInterest;
  }

  /** Whether any pattern observer lives: the only case in which a key's own list is not all its observers. */
  get hasPatterns(): boolean {
    return this.#patternObservers > 0;
  }

  get keyCount(): number {
    return this.#keys.size;
  }

  /** The key's own list, if it has observers. */
  listOf(key: string): ObserverList | undefined {
    return this.#keys.get(key);
  }

  /** Appends to `out` the lists of every pattern that matches `key`. */
  matchPatterns(key: string, out: ObserverList[]): void {
    if (this.#patternObservers > 0) this.#patterns.match(key, out);
  }

  /** The list a new observer of `key` (or of a parsed pattern) joins; not yet registered until {@link add}. */
  listFor(name: string, patternSegments?: readonly string[]): ObserverList {
    if (patternSegments !== undefined) return this.#patterns.obtain(name, patternSegments, this.#host);
    return this.#keys.get(name) ?? new ObserverList(name, false, this.#host);
  }

  /** Adds a living observer to its list, registering the list if it was new. */
  add(observer: Observer, callback: ObserverCallback): void {
    const list = observer.list;
    list.add(observer, callback);
    if (list.isPattern) this.#patternObservers++;
    if (list.size !== 1) return;
    if (!list.isPattern) this.#keys.set(list.name, list);
    this.#onInterest?.(list.name, list.isPattern, true);
  }

  /** Forgets a list that `listFor` made and no observer joined (its registration was refused). */
  abandon(list: ObserverList): void {
    if (list.size === 0 && list.isPattern) this.#patterns.delete(list);
  }

  /** Takes out an observer whose state has just lost ACTIVE; drops its list if it was the last. */
  remove(observer: Observer): void {
    const list = observer.list;
    list.delete(observer);
    if (list.isPattern) this.#patternObservers--;
    if (list.size !== 0) return;
    if (list.isPattern) this.#patterns.delete(list);
    else if (this.#keys.get(list.name) === list) this.#keys.delete(list.name);
    else return;
    this.#onInterest?.(list.name, list.isPattern, false);
  }

  /** The living observer with this id (exactly as `sub.id` wrote it), if any. */
  find(id: string): Observer | undefined {
    const parsed = parseId(id);
    if (parsed === undefined) return undefined;
    const list = parsed.isPattern ? this.#patterns.get(parsed.name) : this.#keys.get(parsed.name);
    const observer = list?.find(parsed.n);
    return observer !== undefined && (observer.state & ACTIVE) !== 0 ? observer : undefined;
  }

  /** Observers a change of `key` would reach now. */
  countFor(key: string): number {
    let count = this.#keys.get(key)?.size ?? 0;
    if (this.#patternObservers > 0) {
      const lists: ObserverList[] = [];
      this.#patterns.match(key, lists);
      for (const list of lists) count += list.size;
    }
    return count;
  }

  /** The living observers a change of `key` would reach now, in delivery (registration) order. */
  observersOf(key: string): Observer[] {
    const lists: ObserverList[] = [];
    const own = this.#keys.get(key);
    if (own !== undefined) lists.push(own);
    this.matchPatterns(key, lists);
    return lists.flatMap((list) => list.living()).sort((a, b) => a.n - b.n);
  }

  keys(): string[] {
    return [...this.#keys.keys()];
  }

  patterns(): string[] {
    return this.#patterns.patterns();
  }

  /** Every list, keys' then patterns'; a copy, so that removing while iterating is safe. */
  lists(): ObserverList[] {
    return [...this.#keys.values(), ...this.#patterns.lists()];
  }
}
