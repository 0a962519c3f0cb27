import { InvalidArgumentError } from '../core/errors.js';
import type { ObserverHost } from './observer.js';
import { ObserverList } from './observer-list.js';

/**
 * Checks a pattern: '/'-separated segments where a segment is a literal, `*`
 * (exactly one segment) or, as the last segment only, `**` (one or more
 * segments). A `*` inside a literal segment is refused rather than guessed at.
 */
export function parsePattern(pattern: unknown): string[] {
  if (typeof pattern !== 'string' || pattern.length === 0) {
    throw InvalidArgumentError.expected('HERALD_INVALID_PATTERN', 'pattern', 'a non-empty string', pattern);
  }
  const segments = pattern.split('/');
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    if (segment === '*' || !segment.includes('*')) continue;
    if (segment === '**' && i === segments.length - 1) continue;
    throw new InvalidArgumentError(
      'HERALD_INVALID_PATTERN',
      `\`pattern\` segment ${JSON.stringify(segment)} in ${JSON.stringify(pattern)} is not allowed: use '*' for one whole segment, or '**' as the last segment`,
    );
  }
  return segments;
}

/** Whether `key` matches `pattern` (a pattern that {@link parsePattern} accepts), as the trie would match it. */
export function matchesPattern(pattern: string, key: string): boolean {
  const want = pattern.split('/');
  const have = key.split('/');
  const rest = want[want.length - 1] === '**';
  const fixed = rest ? want.length - 1 : want.length;
  if (rest ? have.length <= fixed : have.length !== fixed) return false;
  for (let i = 0; i < fixed; i++) {
    if (want[i] !== '*' && want[i] !== have[i]) return false;
  }
  return true;
}

/** One node of the pattern trie. */
export class PatternNode {
  readonly parent: PatternNode | undefined;
  readonly edge: string;
  children: Map<string, PatternNode> | undefined = undefined;
  star: PatternNode | undefined = undefined;
  /** Observers of the pattern that ends exactly here. */
  list: ObserverList | undefined = undefined;
  /** Observers of the pattern that ends here with `/**`. */
  rest: ObserverList | undefined = undefined;

  constructor(parent: PatternNode | undefined, edge: string) {
    this.parent = parent;
    this.edge = edge;
  }

  isEmpty(): boolean {
    return this.list === undefined && this.rest === undefined && this.star === undefined && (this.children === undefined || this.children.size === 0);
  }
}

/**
 * Patterns in a trie of segments, so that matching a key costs its number of
 * segments (times the wildcard branches), not the number of patterns.
 */
export class PatternTrie {
  readonly #root = new PatternNode(undefined, '');
  readonly #byPattern = new Map<string, ObserverList>();
  readonly #nodes = new Map<ObserverList, PatternNode>();

  get size(): number {
    return this.#byPattern.size;
  }

  get(pattern: string): ObserverList | undefined {
    return this.#byPattern.get(pattern);
  }

  patterns(): string[] {
    return [...this.#byPattern.keys()];
  }

  lists(): IterableIterator<ObserverList> {
    return this.#byPattern.values();
  }

  /** The list of `pattern`, created (with its trie path) if it does not exist. */
  obtain(pattern: string, segments: readonly string[], host: ObserverHost): ObserverList {
    const existing = this.#byPattern.get(pattern);
    if (existing !== undefined) return existing;
    let node = this.#root;
    const last = segments.length - 1;
    const endsWithRest = segments[last] === '**';
    const depth = endsWithRest ? last : segments.length;
    for (let i = 0; i < depth; i++) {
      const segment = segments[i]!;
      if (segment === '*') {
        node = node.star ??= new PatternNode(node, '*');
      } else {
        const children = (node.children ??= new Map<string, PatternNode>());
        let child = children.get(segment);
        if (child === undefined) children.set(segment, (child = new PatternNode(node, segment)));
        node = child;
      }
    }
    const list = new ObserverList(pattern, true, host);
    this.#nodes.set(list, node);
    if (endsWithRest) node.rest = list;
    else node.list = list;
    this.#byPattern.set(pattern, list);
    return list;
  }

  /** Forgets an emptied list and prunes the trie path that only it used. */
  delete(list: ObserverList): void {
    const end = this.#nodes.get(list);
    if (end === undefined) return;
    this.#nodes.delete(list);
    let node: PatternNode = end;
    if (node.rest === list) node.rest = undefined;
    else node.list = undefined;
    this.#byPattern.delete(list.name);
    while (node.parent !== undefined && node.isEmpty()) {
      const parent = node.parent;
      if (parent.star === node) parent.star = undefined;
      else parent.children!.delete(node.edge);
      node = parent;
    }
  }

  /**
   * Every pattern list whose pattern matches `key`. Iterative, with a stack
   * of (node, segment) pairs: a key of any number of segments cannot
   * overflow the call stack.
   */
  match(key: string, out: ObserverList[]): void {
    const segments = key.split('/');
    const nodes: PatternNode[] = [this.#root];
    const depths: number[] = [0];
    while (nodes.length > 0) {
      const node = nodes.pop()!;
      const i = depths.pop()!;
      if (i === segments.length) {
        if (node.list !== undefined) out.push(node.list);
        continue;
      }
      if (node.rest !== undefined) out.push(node.rest);
      // Pushed star first so that the literal branch is taken first, as the recursive walk did.
      if (node.star !== undefined) {
        nodes.push(node.star);
        depths.push(i + 1);
      }
      const child = node.children?.get(segments[i]!);
      if (child !== undefined) {
        nodes.push(child);
        depths.push(i + 1);
      }
    }
  }
}
