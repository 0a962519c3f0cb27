import type { Gap } from '../core/backplane-port.js';
import type { Change, CloseReason, ObserverCallback, OverflowPolicy, Subscription } from '../core/types.js';
import type { Mailbox } from '../delivery/mailbox.js';
import type { ObserverList } from './observer-list.js';

/** `state` bits. An observer whose state is exactly ACTIVE takes the fast delivery path. */
export const ACTIVE = 1;
/** Its next delivery must wait: a returned promise is pending, or its queue is being worked off. */
export const BUSY = 2;
/** Has an `isAlive` probe to check before each delivery. */
export const PROBED = 4;

/** What an observer handle needs of its hub: the one way to remove it. */
export interface ObserverHost {
  release(observer: Observer, reason: CloseReason): boolean;
}

/**
 * Everything about an observer that most observers never need: allocated on
 * first use, so that a plain idle observer stays small.
 */
export class ObserverExt {
  /** The callback, kept here once the observer has an ext; cleared when it goes. */
  callback: ObserverCallback | undefined;
  label: string | undefined = undefined;
  limit: number;
  overflow: OverflowPolicy;
  onClose: ((reason: CloseReason) => unknown) | undefined = undefined;
  isAlive: (() => boolean) | undefined = undefined;
  owner: WeakRef<object> | undefined = undefined;
  signal: AbortSignal | undefined = undefined;
  /** Driven by a consumer's pull (watch): never timed out and never awaited by `drain()`. */
  pull = false;
  mailbox: Mailbox | undefined = undefined;
  /** Set by `removeAfterQueued` once every change before the call is its last: it goes with this reason when idle. */
  ending: CloseReason | undefined = undefined;
  /** Changes handed by `deliverTo`, delivered before the mailbox's: outside its bound, oldest first. */
  prelude: Change[] | undefined = undefined;
  errors = 0;
  dropped = 0;
  onGap: ((gap: Gap) => unknown) | undefined = undefined;
  /** A gap signal waiting for the changes queued before it. */
  gap: Gap | undefined = undefined;
  gaps = 0;
  /** Identifies the delivery in flight; bumped when it settles or times out. */
  token = 0;
  /** Whether a returned promise holds the observer now (rather than a queue being worked off). */
  awaiting = false;
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
 * within a hundred-odd bytes.
 */
export class Observer implements Subscription {
  // The callback is not kept here: it lives in `list.fns` while the observer
  // has no ext, and in `ext.callback` once it has one. One copy fewer is 8
  // bytes less per observer.
  state: number;
  /**
   * Deliveries not seen by its list's job count: +1 for each delivery from
   * its queue or a single-observer job, -1 for each job of its list that did
   * not deliver to it. See {@link ObserverList.visits}.
   */
  delivered = 0;
  /** The list this observer lives in: its key's, or its pattern's. */
  readonly list: ObserverList;
  /** Registration number, unique in the hub and increasing: the order of delivery within one change. */
  readonly n: number;
  /** Position in `list.items` and `list.fns`; the list keeps it true across compaction. */
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
    return formatId(this.list.isPattern, this.n, this.list.name);
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

/** The parts of an id exactly as {@link formatId} writes them, or undefined when it is not one herald made. */
export function parseId(id: string): { isPattern: boolean; n: number; name: string } | undefined {
  const match = /^([kp])([1-9][0-9]{0,15}):/.exec(id);
  if (match === null) return undefined;
  const n = Number(match[2]);
  if (!Number.isSafeInteger(n)) return undefined;
  return { isPattern: match[1] === 'p', n, name: id.slice(match[0].length) };
}
