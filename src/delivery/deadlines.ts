/**
 * Deadlines of deliveries in flight, all of one length: insertion order is
 * deadline order, so one timer, armed for the oldest, serves them all. The
 * timer is cleared whenever nothing is in flight, so it never holds the
 * process open.
 */
export class Deadlines<T extends object> {
  readonly #ms: number;
  readonly #onExpired: (item: T) => void;
  /** Item → its deadline (`performance.now()` milliseconds), oldest first. */
  readonly #items = new Map<T, number>();
  #timer: NodeJS.Timeout | undefined;

  /** `ms` from 1 to 2^31 - 1: what `setTimeout` can wait without firing at once. */
  constructor(ms: number, onExpired: (item: T) => void) {
    this.#ms = ms;
    this.#onExpired = onExpired;
  }

  get size(): number {
    return this.#items.size;
  }

  add(item: T): void {
    this.#items.delete(item);
    this.#items.set(item, performance.now() + this.#ms);
    this.#timer ??= setTimeout(this.#expire, this.#ms);
  }

  delete(item: T): void {
    if (!this.#items.delete(item) || this.#items.size > 0) return;
    this.stop();
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  readonly #expire = (): void => {
    this.#timer = undefined;
    const now = performance.now();
    for (const [item, deadline] of this.#items) {
      if (deadline > now) {
        // An expiry handler in this loop may have armed the timer for a later item already.
        clearTimeout(this.#timer);
        this.#timer = setTimeout(this.#expire, Math.ceil(deadline - now));
        return;
      }
      this.#items.delete(item);
      this.#onExpired(item);
    }
    if (this.#items.size === 0) this.stop();
  };
}
