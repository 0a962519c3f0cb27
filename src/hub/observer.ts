import type { Change, CloseReason, ObserverCallback, OverflowPolicy, Subscription } from '../core/types.js';
import type { Deque } from '../core/deque.js';
import type { Gap } from '../core/backplane-port.js';
import type { ObserverList } from './registry.js';

/** `state` bits. An observer whose state is exactly ACTIVE takes the fast delivery path. @internal */
export const ACTIVE = 1;
/** A returned promise is holding this observer's next delivery. */
export const BUSY = 2;
/** Has an `isAlive` probe to check before each delivery. */
export const PROBED = 4;

/** What the hub core offers the handles it hands out. @internal */
export interface ObserverHost {
  release(observer: Observer, reason: CloseReason): boolean;
}

/**
 * Everything about an observer that most observers never need: allocated on
 * first use so that a plain idle observer stays small. @internal
 */
export class ObserverExt {
  /** The callback of an observer that has an ext (its `fns` slot holds it too, while it takes the fast path). */
  callback: ObserverCallback | undefined;
  label: string | undefined = undefined;
  limit: number;
  overflow: OverflowPolicy;
  onClose: ((reason: CloseReason) => void) | undefined = undefined;
  isAlive: (() => boolean) | undefined = undefined;
  owner: WeakRef<object> | undefined = undefined;
  signal: AbortSignal | undefined = undefined;
  /** Driven by a consumer's pull (watch): never timed out and never awaited by `drain()`. */
  pull = false;
  queue: Deque<Change> | undefined = undefined;
  errors = 0;
  dropped = 0;
  onGap: ((gap: Gap) => void) | undefined = undefined;
  /** A gap signal waiting for the changes queued before it. */
  gap: Gap | undefined = undefined;
  gaps = 0;
  /** Identifies the delivery in flight; bumped when it settles or times out. */
  token = 0;
  deadline = 0;
  /** The change whose returned promise is in flight, for the timeout report. */
  current: Change | undefined = undefined;

  constructor(callback: ObserverCallback, limit: number, overflow: OverflowPolicy) {
    this.callback = callback;
    this.limit = limit;
    this.overflow = overflow;
  }
}

/**
 * One registered callback, and at the same time the {@link Subscription}
 * handle the caller holds: one object per observer keeps an idle observer
 * within a hundred-odd bytes. @internal
 */
export class Observer implements Subscription {
  // The callback is not kept here: it lives in `list.fns` while the observer
  // takes the fast path, and in `ext.callback` for an observer with an ext.
  // One copy fewer is 8 bytes less per observer.
  state: number;
  /**
   * Deliveries not seen by the list's job count: +1 for each delivery from
   * its queue or a pattern snapshot, -1 for each job of its list that did not
   * deliver to it. See {@link ObserverList.visits}.
   */
  delivered = 0;
  /** The list this observer lives in: its key's, or its pattern's. */
  list: ObserverList;
  /** Registration number, unique in the hub and increasing: the order of delivery within one change. */
  readonly n: number;
  /** Position in `list.items` and `list.fns`. */
  index = 0;
  /** `list.enqueued` when it joined: jobs up to this one never included it. */
  joinMark = 0;
  /** `list.enqueued` when it left: jobs after this one never included it. */
  leaveMark = 0;
  /** Milliseconds after the hub's start at registration. */
  readonly bornAt: number;
  ext: ObserverExt | undefined;

  constructor(list: ObserverList, n: number, state: number, bornAt: number, ext: ObserverExt | undefined) {
    this.state = state;
    this.list = list;
    this.n = n;
    this.bornAt = bornAt;
    this.ext = ext;
  }

  get id(): string {
    return formatId(this.list.pattern !== undefined, this.n, this.list.name);
  }

  get key(): string {
    return this.list.name;
  }

  get active(): boolean {
    return (this.state & ACTIVE) !== 0;
  }

  unsubscribe(): boolean {
    return this.list.host.release(this, 'unsubscribed');
  }

  [Symbol.dispose](): void {
    this.list.host.release(this, 'unsubscribed');
  }
}

/**
 * Ids carry the registration number and the key (or pattern), so that
 * `remove(id)` finds the observer by a binary search of its list instead of
 * an id index that would cost every observer memory.
 */
function formatId(isPattern: boolean, n: number, name: string): string {
  return `${isPattern ? 'p' : 'k'}${n}:${name}`;
}

/** The parts of an id, or undefined when it is not one herald made. @internal */
export function parseId(id: string): { isPattern: boolean; n: number; name: string } | undefined {
  const colon = id.indexOf(':');
  const kind = id[0];
  if (colon < 2 || (kind !== 'k' && kind !== 'p')) return undefined;
  const digits = id.slice(1, colon);
  if (!/^[0-9]+$/.test(digits)) return undefined;
  return { isPattern: kind === 'p', n: Number(digits), name: id.slice(colon + 1) };
}
