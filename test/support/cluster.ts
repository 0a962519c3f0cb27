import { ObserverManager, type Backplane, type Change, type Gap, type Subscription } from '../../src/index.js';
import { within } from './deadline.js';

/** A hub on `backplane` with one observer of `key` that records changes and gaps, and wakes waiters as they come. */
export function clusteredHub(backplane: Backplane, key: string): ClusteredHub {
  const hub = new ObserverManager({ backplane, sweepIntervalMs: 0 });
  const node: ClusteredHub = { hub, backplane, key, changes: [], gaps: [], subscription: undefined!, until: undefined! };
  const waiters = new Set<() => void>();
  const wake = (): void => {
    for (const waiter of [...waiters]) waiter();
  };
  node.subscription = hub.observe(key, (change) => void (node.changes.push(change), wake()), { onGap: (gap) => void (node.gaps.push(gap), wake()) });
  node.until = (predicate, what = 'the awaited changes or gaps', timeoutMs = 30_000) => {
    let check!: () => void;
    const reached = new Promise<void>((resolve) => {
      check = (): void => {
        if (predicate(node)) resolve();
      };
      waiters.add(check);
      check();
    });
    return within(reached, timeoutMs, `the node observing ${key} to receive ${what}`).finally(() => waiters.delete(check));
  };
  return node;
}

export interface ClusteredHub {
  readonly hub: ObserverManager;
  readonly backplane: Backplane;
  /** The key its observer watches. */
  readonly key: string;
  subscription: Subscription;
  readonly changes: Change[];
  readonly gaps: Gap[];
  /** Resolves once `predicate` holds, checked on every arrival; rejects, saying `what` it waited for, after `timeoutMs` (30 s). */
  until(predicate: (node: ClusteredHub) => boolean, what?: string, timeoutMs?: number): Promise<void>;
}

/** Collects unhandled rejections and uncaught errors while a test runs. */
export function trapUnhandled(): { readonly errors: unknown[]; stop(): void } {
  const errors: unknown[] = [];
  const onError = (error: unknown): void => void errors.push(error);
  process.on('unhandledRejection', onError);
  process.on('uncaughtException', onError);
  return {
    errors,
    stop: () => {
      process.off('unhandledRejection', onError);
      process.off('uncaughtException', onError);
    },
  };
}

let counter = 0;
export const uniqueKey = (name: string): string => `fault/${process.pid}/${name}/${++counter}`;
