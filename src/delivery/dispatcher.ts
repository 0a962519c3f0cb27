import type { Gap } from '../core/backplane-port.js';
import { TimeoutError } from '../core/errors.js';
import type { Change, CloseReason, ErrorContext, OverflowPolicy } from '../core/types.js';
import { ACTIVE, BUSY, ObserverExt, PROBED, type Observer } from '../hub/observer.js';
import { SLOW, type ObserverList } from '../hub/observer-list.js';
import type { Counters } from '../stats/counters.js';
import { LatencyRecorder } from '../stats/latency.js';
import { Deadlines } from './deadlines.js';
import { callContained, type Then } from './contain.js';
import { Mailbox, type Equals } from './mailbox.js';

/** What the dispatcher needs of the rest of the hub. */
export interface DispatchContext {
  readonly counters: Counters;
  readonly latency: LatencyRecorder;
  /** Change detection for merges under `coalesce`. */
  readonly equals: Equals;
  /** How long a returned promise may hold an observer's next delivery; Infinity for ever. */
  readonly callbackTimeoutMs: number;
  readonly defaultLimit: number;
  readonly defaultOverflow: OverflowPolicy;
  /** Every failure of an observer's callback, with its context; contained by the dispatcher. */
  report(error: unknown, context: ErrorContext): void;
  /** Removes an observer (`dead`, `slow-consumer`, `owner-collected`). */
  release(observer: Observer, reason: CloseReason): boolean;
  /** Why the observer must go before its next delivery, or undefined while it is alive. */
  deadReason(observer: Observer): CloseReason | undefined;
  countDead(removed: number): void;
  /** Every list of the hub, for a gap signal. */
  lists(): readonly ObserverList[];
}

/** Job kinds, in the `length` slot of a job: ≥ 0 is one list with that many observers at notify time. */
const MERGED = -1;
const PUMP = -2;
const GAP = -3;
const END = -4;

/** The lists of a change that matched patterns, each with its length at notify time. */
interface Merged {
  readonly lists: ObserverList[];
  readonly lengths: number[];
}

/**
 * Delivers accepted changes: a FIFO of dispatch jobs run on the microtask
 * queue, each reaching the observers a change had at notify time, in
 * registration order. Every callback runs isolated: whatever it throws,
 * returns or hangs on is contained, reported and counted. An observer whose
 * returned promise is pending (BUSY) takes further changes into its own
 * bounded {@link Mailbox}; they are delivered one at a time as its promises settle.
 */
export class Dispatcher {
  readonly #context: DispatchContext;
  readonly #counters: Counters;
  /** Queued jobs, four slots each: change (or gap), target (list, merged lists, or observer), kind or length, sample start (or 0). */
  #jobs: unknown[] = [];
  #jobHead = 0;
  #scheduled = false;
  readonly #flush = (): void => this.#runJobs();
  /** Returned promises pending, of observers `drain()` waits for. */
  #awaited = 0;
  /**
   * Frames of the dispatcher's own work on the stack (the job loop, an
   * observer resuming after its promise). While one runs, users' code may
   * call back in (a thenable settling at once, an `equals`, an unsubscribe):
   * a settlement then waits for a microtask, and `drain()` for the frame to end.
   */
  #depth = 0;
  readonly #deadlines: Deadlines<Observer> | undefined;
  #drainWaiters: (() => void)[] = [];

  constructor(context: DispatchContext) {
    this.#context = context;
    this.#counters = context.counters;
    if (context.callbackTimeoutMs !== Infinity) {
      this.#deadlines = new Deadlines(context.callbackTimeoutMs, (observer) => this.#expire(observer));
    }
  }

  /** Queues the delivery of `change` to the first `length` observers of `list` (its snapshot). */
  enqueueList(change: Change, list: ObserverList, length: number, t0: number): void {
    list.enqueued++;
    this.#push(change, list, length, t0);
  }

  /** Queues the delivery of `change` to several lists (a key's own and its patterns'), merged in registration order. */
  enqueueMerged(change: Change, lists: ObserverList[], t0: number): void {
    const lengths = lists.map((list) => {
      list.enqueued++;
      return list.items.length;
    });
    this.#push(change, { lists, lengths } satisfies Merged, MERGED, t0);
  }

  /** Queues a gap signal for every observer with an `onGap`, behind the changes queued before it. */
  enqueueGap(gap: Gap): void {
    this.#push(gap, null, GAP, 0);
  }

  /**
   * Hands `change` to one living observer only, ahead of every change queued
   * for it or not yet dispatched to it, behind the changes handed to it this
   * way before, and outside its queue bound. An idle observer becomes BUSY at
   * once, so every job dispatched from here on queues behind this change.
   */
  deliverTo(observer: Observer, change: Change): void {
    const ext = this.extOf(observer);
    this.#counters.fanOut++;
    if (ext.ending !== undefined) {
      this.#counters.cancelled++;
      return;
    }
    this.#counters.queued++;
    (ext.prelude ??= []).push(change);
    if ((observer.state & BUSY) === 0) {
      observer.state |= BUSY;
      this.#push(undefined, observer, PUMP, 0);
    }
  }

  /**
   * Removes `observer` with `reason` once every change notified before this
   * call has reached it (delivered, or dropped or coalesced by its queue's
   * policy); later changes are cancelled. A job at the back of the queue
   * marks where its changes end.
   */
  removeAfterQueued(observer: Observer, reason: CloseReason): void {
    this.extOf(observer);
    this.#push(reason, observer, END, 0);
  }

  /** Whether every queued delivery has settled (unread `watch()` iterators aside). */
  get idle(): boolean {
    return this.#jobs.length === 0 && this.#awaited === 0;
  }

  /** Resolves when {@link idle}; never rejects. */
  drain(): Promise<void> {
    if (this.idle) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /**
   * A removed observer: what is left of its queues is cancelled, and counted;
   * nothing waits for its returned promise any more (removal wins), though
   * the promise's rejection is still handled.
   */
  forget(observer: Observer, ext: ObserverExt): void {
    const cleared = (ext.mailbox?.clear() ?? 0) + (ext.prelude?.length ?? 0);
    ext.prelude = undefined;
    this.#counters.cancelled += cleared;
    this.#counters.queued -= cleared;
    if (ext.awaiting) {
      ext.token++;
      this.#finishAwait(observer, ext);
    }
  }

  /** Stops the timeout timer: the hub is closed and drained. */
  stop(): void {
    this.#deadlines?.stop();
  }

  /** The observer's ext, made on first need: its callback moves there, and it takes the slow path from then on. */
  extOf(observer: Observer): ObserverExt {
    let ext = observer.ext;
    if (ext === undefined) {
      const callback = observer.list.callbackOf(observer)!;
      ext = observer.ext = new ObserverExt(callback, this.#context.defaultLimit, this.#context.defaultOverflow);
      observer.list.toSlowPath(observer);
    }
    return ext;
  }

  // ---- the job loop ----

  #push(a: unknown, b: unknown, kind: number, t0: number): void {
    this.#jobs.push(a, b, kind, t0);
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(this.#flush);
    }
  }

  #runJobs(): void {
    this.#depth++;
    try {
      this.#runQueued();
    } finally {
      this.#jobs.length = 0;
      this.#jobHead = 0;
      this.#scheduled = false;
      this.#depth--;
    }
    this.#settleDrain();
  }

  #runQueued(): void {
    const jobs = this.#jobs;
    while (this.#jobHead < jobs.length) {
      const i = this.#jobHead;
      const a = jobs[i];
      const b = jobs[i + 1];
      const kind = jobs[i + 2] as number;
      const t0 = jobs[i + 3] as number;
      jobs[i] = jobs[i + 1] = undefined;
      this.#jobHead = i + 4;
      if (t0 !== 0) this.#context.latency.record(performance.now() - t0);
      if (kind >= 0) this.#dispatchList(a as Change, b as ObserverList, kind);
      else if (kind === MERGED) this.#dispatchMerged(a as Change, b as Merged);
      else if (kind === PUMP) this.#dispatchPump(b as Observer);
      else if (kind === END) this.#dispatchEnd(b as Observer, a as CloseReason);
      else this.#dispatchGap(a as Gap);
      // A long chain of re-entrant notifies must not grow the job list without end.
      if (this.#jobHead >= 4096 && this.#jobHead * 2 >= jobs.length) {
        jobs.splice(0, this.#jobHead);
        this.#jobHead = 0;
      }
    }
  }

  /** One list, up to its length at notify time. */
  #dispatchList(change: Change, list: ObserverList, length: number): void {
    this.#dispatchRange(change, list, 0, length);
    list.finishJob();
  }

  /**
   * The hot loop, over slots `from` to `to` of one list: for an idle plain
   * observer it reads nothing but its callback from the dense `fns` array.
   * Anything else (`SLOW`) takes the slow path. Only the call itself is
   * inside the `try`.
   */
  #dispatchRange(change: Change, list: ObserverList, from: number, to: number): void {
    const fns = list.fns;
    const items = list.items;
    let delivered = 0;
    for (let i = from; i < to; i++) {
      const fn = fns[i]!;
      if (fn === SLOW) {
        this.#visitSlow(items[i]!, change, list);
        continue;
      }
      delivered++;
      let result: unknown;
      try {
        result = fn(change);
      } catch (error) {
        this.#fail(items[i]!, error, change);
        continue;
      }
      if (result !== undefined) this.#returned(items[i]!, result, change);
    }
    this.#counters.deliveries += delivered;
  }

  /**
   * Several lists, each up to its length at notify time, merged by
   * registration number without copying: a cursor per list; the list with
   * the smallest next number delivers, through the hot loop, the whole run of
   * its observers numbered below every other list's next one (found by
   * binary search). Observers registered in long runs, as they usually are,
   * cost what a single list costs.
   */
  #dispatchMerged(change: Change, { lists, lengths }: Merged): void {
    const count = lists.length;
    const cursors = new Array<number>(count).fill(0);
    for (;;) {
      let first = -1;
      let firstN = Infinity;
      let secondN = Infinity;
      for (let j = 0; j < count; j++) {
        const c = cursors[j]!;
        if (c >= lengths[j]!) continue;
        const n = lists[j]!.items[c]!.n;
        if (n < firstN) {
          secondN = firstN;
          firstN = n;
          first = j;
        } else if (n < secondN) {
          secondN = n;
        }
      }
      if (first === -1) break;
      const list = lists[first]!;
      const from = cursors[first]!;
      const to = secondN === Infinity ? lengths[first]! : list.firstAtLeast(from + 1, lengths[first]!, secondN);
      cursors[first] = to;
      this.#dispatchRange(change, list, from, to);
    }
    for (const list of lists) list.finishJob();
  }

  /** A list slot whose observer is removed, busy, or has an ext. Counts as a visit: see {@link Observer.delivered}. */
  #visitSlow(observer: Observer, change: Change, list: ObserverList): void {
    const state = observer.state;
    if ((state & ACTIVE) === 0) {
      // Removed after this change was notified (this job is number dispatched + 1): removal wins, and it is counted.
      if (list.dispatched < observer.leaveMark) {
        this.#counters.cancelled++;
        observer.delivered--;
      }
    } else if (observer.ext!.ending !== undefined) {
      // Notified after `removeAfterQueued`: it goes with what came before, and this change never reaches it.
      this.#counters.cancelled++;
      observer.delivered--;
    } else if ((state & BUSY) !== 0) {
      this.#offer(observer, change);
      observer.delivered--;
    } else if (!this.#deliverChecked(observer, change)) {
      observer.delivered--;
    }
  }

  /**
   * An observer made BUSY by {@link deliverTo}: it works off its queues now,
   * unless a promise it returned meanwhile holds it (its settlement resumes it).
   */
  #dispatchPump(observer: Observer): void {
    if ((observer.state & ACTIVE) === 0) return; // what it held was cancelled at its removal
    const ext = observer.ext!;
    if (ext.awaiting) return;
    observer.state &= ~BUSY;
    this.#resume(observer, ext);
  }

  /** Where the changes of an observer given to {@link removeAfterQueued} end: it goes now, or once idle. */
  #dispatchEnd(observer: Observer, reason: CloseReason): void {
    if ((observer.state & ACTIVE) === 0) return;
    const ext = observer.ext!;
    ext.ending ??= reason;
    if ((observer.state & BUSY) === 0) this.#context.release(observer, ext.ending);
  }

  /** Delivers after the liveness check; returns whether the callback was invoked. */
  #deliverChecked(observer: Observer, change: Change): boolean {
    if ((observer.state & PROBED) !== 0) {
      const reason = this.#context.deadReason(observer);
      if (reason !== undefined) {
        if (this.#context.release(observer, reason)) this.#context.countDead(1);
        this.#counters.cancelled++;
        return false;
      }
    }
    const callback = observer.ext!.callback;
    if ((observer.state & ACTIVE) === 0 || callback === undefined) {
      // Its `isAlive` removed it: removal wins.
      this.#counters.cancelled++;
      return false;
    }
    this.#counters.deliveries++;
    try {
      const result = callback(change);
      if (result !== undefined) this.#returned(observer, result, change);
    } catch (error) {
      this.#fail(observer, error, change);
    }
    return true;
  }

  // ---- what a callback returned ----

  /**
   * Waits for a returned thenable. Reading `then` is the callback's code too
   * (a getter, a Proxy trap, a revoked Proxy), so it is contained like a throw.
   */
  #returned(observer: Observer, result: unknown, change: Change): void {
    if ((typeof result !== 'object' && typeof result !== 'function') || result === null) return;
    let then: unknown;
    try {
      then = (result as { then?: unknown }).then;
    } catch (error) {
      this.#fail(observer, error, change);
      return;
    }
    if (typeof then === 'function') this.#await(observer, result, then as Then, change);
  }

  #await(observer: Observer, thenable: unknown, then: Then, change: Change): void {
    if ((observer.state & ACTIVE) === 0) {
      // It removed itself while running: nothing waits for it, but its rejection is still its own failure.
      try {
        then.call(thenable, undefined, (error: unknown) => this.#fail(observer, error, change));
      } catch (error) {
        this.#fail(observer, error, change);
      }
      return;
    }
    const ext = this.extOf(observer);
    observer.state |= BUSY;
    ext.awaiting = true;
    const token = ++ext.token;
    ext.current = change;
    if (!ext.pull) {
      this.#awaited++;
      this.#deadlines?.add(observer);
    }
    // As a promise would: the first settlement counts, and later calls (or a throw after it) are ignored.
    // A thenable may call back from inside the dispatcher's own work (inside `then`, from an `equals`,
    // from another callback): the settlement then waits for a microtask, as a promise's would.
    let settled = false;
    const finish = (): void => {
      if (this.#depth > 0) queueMicrotask(() => this.#settle(observer, ext, token));
      else this.#settle(observer, ext, token);
    };
    const settle = (): void => {
      if (settled) return;
      settled = true;
      finish();
    };
    const reject = (error: unknown): void => {
      if (settled) return;
      settled = true;
      if (ext.token === token) this.#fail(observer, error, change);
      finish();
    };
    try {
      then.call(thenable, settle, reject);
    } catch (error) {
      reject(error);
    }
  }

  #settle(observer: Observer, ext: ObserverExt, token: number): void {
    if (ext.token !== token) return; // settled or timed out already
    ext.token++;
    this.#finishAwait(observer, ext);
  }

  #expire(observer: Observer): void {
    const ext = observer.ext!;
    ext.token++;
    this.#counters.deliveryTimeouts++;
    const change = ext.current!;
    const ms = this.#context.callbackTimeoutMs;
    this.#fail(observer, new TimeoutError(`observer \`${observer.id}\` did not settle within callbackTimeoutMs (${ms} ms) for change ${change.seq} of ${JSON.stringify(change.key)}`), change);
    this.#finishAwait(observer, ext);
  }

  #finishAwait(observer: Observer, ext: ObserverExt): void {
    ext.awaiting = false;
    ext.current = undefined;
    if (!ext.pull) {
      this.#awaited--;
      this.#deadlines?.delete(observer);
    }
    if ((observer.state & ACTIVE) !== 0) {
      observer.state &= ~BUSY;
      this.#depth++;
      try {
        this.#resume(observer, ext);
      } finally {
        this.#depth--;
      }
    }
    this.#settleDrain();
  }

  /**
   * An idle observer works off its queues (what `deliverTo` handed it first)
   * until a callback returns a promise again; then a waiting gap signal.
   */
  #resume(observer: Observer, ext: ObserverExt): void {
    while ((observer.state & (ACTIVE | BUSY)) === ACTIVE) {
      const change = ext.prelude?.shift() ?? ext.mailbox?.shift();
      if (change === undefined) break;
      this.#counters.queued--;
      if (this.#deliverChecked(observer, change)) observer.delivered++;
    }
    if ((observer.state & (ACTIVE | BUSY)) === ACTIVE && ext.gap !== undefined) this.#deliverGap(observer, ext);
    if ((observer.state & (ACTIVE | BUSY)) === ACTIVE && ext.ending !== undefined) this.#context.release(observer, ext.ending);
  }

  // ---- queues and gaps ----

  /** Admits a change to a busy observer's queue, applying its overflow policy when full. */
  #offer(observer: Observer, change: Change): void {
    const ext = observer.ext!;
    const mailbox = (ext.mailbox ??= new Mailbox(ext.limit, ext.overflow));
    const counters = this.#counters;
    switch (mailbox.offer(change, this.#context.equals)) {
      case 'queued':
        counters.queued++;
        return;
      case 'dropped-oldest':
      case 'dropped-newest':
        counters.dropped++;
        ext.dropped++;
        return;
      case 'coalesced':
        counters.coalesced++;
        break;
      case 'coalesced-away':
        counters.coalesced += 2;
        counters.queued--;
        break;
      case 'disconnect':
        counters.dropped++;
        ext.dropped++;
        this.#context.release(observer, 'slow-consumer');
        return;
      case 'cancelled':
        counters.cancelled++;
        break;
    }
    const failure = mailbox.takeError();
    if (failure !== undefined) this.#fail(observer, failure.error, change);
  }

  /**
   * A gap signal reaches every observer with an `onGap`, after the changes
   * already queued for it: at once for an idle observer (this job runs after
   * every change queued before it), or once a busy one has worked off its queue.
   */
  #dispatchGap(gap: Gap): void {
    for (const list of this.#context.lists()) {
      for (const observer of list.living()) {
        const ext = observer.ext;
        if (ext?.onGap === undefined) continue;
        if (ext.gap === undefined) {
          ext.gaps++;
          this.#counters.gapSignals++;
        }
        ext.gap = gap;
        if ((observer.state & BUSY) === 0) this.#deliverGap(observer, ext);
      }
    }
  }

  #deliverGap(observer: Observer, ext: ObserverExt): void {
    const gap = ext.gap!;
    ext.gap = undefined;
    if ((observer.state & ACTIVE) === 0) return;
    // Contained like onClose: a failing onGap never reaches the backplane or the other observers.
    if (!callContained(ext.onGap!, gap)) ext.errors++;
  }

  #fail(observer: Observer, error: unknown, change: Change): void {
    this.#counters.deliveryErrors++;
    if (observer.ext !== undefined) observer.ext.errors++;
    else if ((observer.state & ACTIVE) !== 0) this.extOf(observer).errors++;
    this.#context.report(error, { key: change.key, observerId: observer.id, change });
  }

  #settleDrain(): void {
    if (this.#depth > 0 || this.#drainWaiters.length === 0 || !this.idle) return;
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
