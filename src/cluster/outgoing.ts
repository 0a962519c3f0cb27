import { Deque } from '../core/deque.js';

/** An encoded change on its way out: its key and its bytes. */
export type Outbound = readonly [key: string, data: Uint8Array | string];

/** What {@link Outgoing} needs of its engine. */
export interface Sender {
  /** Hands one change to the engine; a promise settles when the engine has it (or refused it, or lost it). */
  send(key: string, data: Uint8Array | string): Promise<unknown> | void;
  /** Whether a failed send was lost with its connection (to be sent again) rather than refused by the engine. */
  lostInTransit(error: unknown): boolean;
  /** A refused send. */
  failed(error: unknown): void;
  /** How long to wait before sending again what was lost while the way stayed open (attempt 0, 1, ...). */
  retryDelay(attempt: number): number;
}

/**
 * One node's outgoing changes, in one FIFO: nothing overtakes what is
 * queued. While the way is open and nothing waits, a change goes straight to
 * the engine. Otherwise it waits, within `maxBuffered` (the oldest is dropped
 * past it, and counted). A change lost in transit (its connection died before
 * the engine confirmed it) is sent again before everything that waits, since
 * it went out before all of them; receivers drop it if it had arrived after
 * all. When the way opens, what was in flight settles first, then the lost
 * changes and the waiting ones go out in order, and only then do new changes
 * go straight out again.
 */
export class Outgoing {
  readonly counters = { published: 0, publishFailed: 0, publishDropped: 0 };
  readonly #sender: Sender;
  readonly #maxBuffered: number;
  /** Handed to the engine and not settled, oldest first: a connection settles its sends in order. */
  readonly #inFlight = new Deque<Outbound>();
  /** Lost in transit, in the order they were sent: they go before {@link #waiting}. */
  readonly #lost = new Deque<Outbound>();
  /** Made while the way was closed or while older changes were still going out. */
  readonly #waiting = new Deque<Outbound>();
  #open = false;
  #pumping = false;
  #retryTimer: NodeJS.Timeout | undefined;
  #retries = 0;
  #closed = false;
  #onSettled: (() => void) | undefined;
  readonly #onIdle: () => void;

  /** `onIdle` is called each time nothing is left in flight or waiting. */
  constructor(sender: Sender, maxBuffered: number, onIdle: () => void) {
    this.#sender = sender;
    this.#maxBuffered = maxBuffered;
    this.#onIdle = onIdle;
  }

  /** Changes waiting to be sent (lost in transit or held), not those in flight. */
  get buffered(): number {
    return this.#lost.length + this.#waiting.length;
  }

  get idle(): boolean {
    return this.#inFlight.length === 0 && this.buffered === 0 && !this.#pumping;
  }

  /** Whether sends are in flight. */
  get sending(): boolean {
    return this.#inFlight.length > 0;
  }

  /** Sends `data` now if nothing is ahead of it, or queues it behind what is. Never throws. */
  publish(key: string, data: Uint8Array | string): void {
    if (this.#closed) return;
    if (this.#open && !this.#pumping && this.buffered === 0) this.#send([key, data]);
    else this.#hold(this.#waiting, [key, data]);
  }

  /** The engine is reachable: what waits goes out, in order, once what was in flight has settled. */
  open(): void {
    if (this.#closed) return;
    this.#open = true;
    this.#pump();
  }

  /** The engine is away: changes wait from now on. */
  pause(): void {
    this.#open = false;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
  }

  /** Resolves once nothing is in flight (or `stop` has been called); what waits stays. */
  settled(): Promise<void> {
    if (this.#inFlight.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const previous = this.#onSettled;
      this.#onSettled = () => {
        previous?.();
        resolve();
      };
    });
  }

  /** No more sends: what still waits is dropped, and counted. */
  stop(): void {
    this.pause();
    this.#closed = true;
    this.counters.publishDropped += this.buffered;
    this.#lost.clear();
    this.#waiting.clear();
    this.#wakeSettled();
  }

  #pump(): void {
    if (this.#pumping || !this.#open || this.#closed) return;
    this.#pumping = true;
    void this.#drain();
  }

  async #drain(): Promise<void> {
    try {
      // Sends of a connection that was lost settle first: those that failed come back as lost, to go out first.
      await this.settled();
      while (this.#open && !this.#closed) {
        const next = this.#lost.shift() ?? this.#waiting.shift();
        if (next === undefined) break;
        this.#send(next);
      }
    } finally {
      this.#pumping = false;
      if (this.idle) this.#onIdle();
    }
  }

  #send(message: Outbound): void {
    this.counters.published++;
    let sent: Promise<unknown> | void;
    try {
      sent = this.#sender.send(message[0], message[1]);
    } catch (error) {
      this.#fail(error);
      return;
    }
    if (sent === undefined) return;
    this.#inFlight.push(message);
    // An engine that confirms changes together (a batch, a round trip) returns one promise for them: one handler pair for the run.
    if (sent === this.#lastSent) {
      this.#lastRun!.count++;
      return;
    }
    const run = { count: 1 };
    this.#lastSent = sent;
    this.#lastRun = run;
    void sent.then(() => this.#confirmed(run.count), (error: unknown) => this.#rejected(run.count, error));
  }

  /** The promise of the last send, and how many sends in a row it confirms. */
  #lastSent: Promise<unknown> | undefined;
  #lastRun: { count: number } | undefined;

  #confirmed(count: number): void {
    for (let i = 0; i < count; i++) this.#inFlight.shift();
    this.#retries = 0;
    this.#afterSettle();
  }

  #rejected(count: number, error: unknown): void {
    for (let i = 0; i < count; i++) this.#reject(this.#inFlight.shift()!, error);
    this.#afterSettle();
  }

  #reject(message: Outbound, error: unknown): void {
    if (!this.#closed && this.#sender.lostInTransit(error)) {
      // Lost with its connection (which may not have noticed yet): sent again, before what waits.
      this.counters.published--;
      this.#hold(this.#lost, message);
      // The way stayed open (one of several connections failed): try again after a while.
      if (this.#open && this.#retryTimer === undefined) {
        this.#retryTimer = setTimeout(() => {
          this.#retryTimer = undefined;
          this.#pump();
        }, this.#sender.retryDelay(this.#retries++));
      }
    } else {
      this.#fail(error);
    }
  }

  /** A change the engine refused: counted as failed, no longer as published. */
  #fail(error: unknown): void {
    this.counters.published--;
    this.counters.publishFailed++;
    this.#sender.failed(error);
  }

  #afterSettle(): void {
    if (this.#inFlight.length > 0) return;
    this.#wakeSettled();
    if (this.idle) this.#onIdle();
  }

  #wakeSettled(): void {
    const wake = this.#onSettled;
    this.#onSettled = undefined;
    wake?.();
  }

  /** Keeps a change in `queue`, within `maxBuffered` waiting changes in all; past it the oldest is dropped, and counted. */
  #hold(queue: Deque<Outbound>, message: Outbound): void {
    if (this.buffered >= this.#maxBuffered) {
      this.counters.publishDropped++;
      if (this.#maxBuffered === 0) return;
      if (this.#lost.length > 0) this.#lost.shift();
      else this.#waiting.shift();
    }
    queue.push(message);
  }
}
