/** A key or a pattern this node wants changes of. */
export interface Topic {
  /** `'k:'` or `'p:'` and the name: unique among topics. */
  readonly id: string;
  readonly name: string;
  readonly pattern: boolean;
}

/** What {@link Interest} needs of its engine: subscription commands for many topics at once. */
export interface Subscriber {
  /** Subscribes every topic of `topics` on the engine; resolves once the engine has confirmed them. */
  subscribe(topics: readonly Topic[]): Promise<void>;
  /** Unsubscribes every topic of `topics` on the engine. */
  unsubscribe(topics: readonly Topic[]): Promise<void>;
  /** A subscription command failed; the topics it named are tried again after `retryDelay`. */
  failed(error: unknown): void;
  retryDelay(attempt: number): number;
}

/** The id of a key's or a pattern's topic. */
export function topicId(name: string, pattern: boolean): string {
  return (pattern ? 'p:' : 'k:') + name;
}

/**
 * The one owner of a node's engine subscriptions: what the hub wants
 * (keys and patterns with local observers) against what the engine holds.
 * It reconciles the two, in batches, one batch at a time: subscribes what is
 * wanted and not held, unsubscribes what is held and not wanted. Each
 * change of interest marks its topic; a reconnection marks them all, with
 * what the engine holds after it (nothing, for an engine whose subscriptions
 * die with the connection; the client's own list, for one that resubscribes
 * by itself).
 */
export class Interest {
  readonly #engine: Subscriber;
  readonly #onIdle: () => void;
  readonly #wanted = new Map<string, Topic>();
  #held = new Set<string>();
  /** Topics whose wanted and held may differ. */
  #marked = new Set<string>();
  #open = false;
  /** Counts connections: a command sent on an earlier one decides nothing about what the engine holds now. */
  #epoch = 0;
  #running = false;
  #retryTimer: NodeJS.Timeout | undefined;
  #attempt = 0;

  constructor(engine: Subscriber, onIdle: () => void) {
    this.#engine = engine;
    this.#onIdle = onIdle;
  }

  /** Whether the engine has confirmed a subscription for this topic. */
  holds(id: string): boolean {
    return this.#held.has(id);
  }

  get heldCount(): number {
    return this.#held.size;
  }

  get idle(): boolean {
    return !this.#running && this.#marked.size === 0;
  }

  /** The wanted topics. */
  wanted(): IterableIterator<Topic> {
    return this.#wanted.values();
  }

  /** A key's or pattern's first local observer came (`wanted`), or its last one went. */
  want(name: string, pattern: boolean, wanted: boolean): void {
    const id = topicId(name, pattern);
    if (wanted) this.#wanted.set(id, { id, name, pattern });
    else this.#wanted.delete(id);
    this.#marked.add(id);
    this.#run();
  }

  /** The engine is reachable, holding `held` (topic ids): everything is reconciled. */
  open(held: Iterable<string>): void {
    this.#epoch++;
    this.#held = new Set(held);
    this.#marked = new Set([...this.#marked, ...this.#wanted.keys(), ...this.#held]);
    this.#open = true;
    this.#attempt = 0;
    this.#run();
  }

  /** The engine is away: nothing is sent until {@link open}. */
  pause(): void {
    this.#epoch++;
    this.#open = false;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
  }

  #run(): void {
    if (this.#running || !this.#open || this.#retryTimer !== undefined) return;
    if (this.#marked.size === 0) return;
    this.#running = true;
    void this.#reconcile();
  }

  async #reconcile(): Promise<void> {
    try {
      while (this.#open && this.#marked.size > 0) {
        const marked = this.#marked;
        this.#marked = new Set();
        const drop: Topic[] = [];
        const add: Topic[] = [];
        for (const id of marked) {
          const topic = this.#wanted.get(id);
          if (topic !== undefined && !this.#held.has(id)) add.push(topic);
          else if (topic === undefined && this.#held.has(id)) drop.push({ id, name: id.slice(2), pattern: id.startsWith('p:') });
        }
        const epoch = this.#epoch;
        try {
          if (drop.length > 0) {
            // Not held from the moment the command goes: a change arriving meanwhile is for nobody here anyway.
            for (const topic of drop) this.#held.delete(topic.id);
            await this.#engine.unsubscribe(drop);
          }
          if (add.length > 0) {
            await this.#engine.subscribe(add);
            if (epoch === this.#epoch) for (const topic of add) this.#held.add(topic.id);
          }
          this.#attempt = 0;
        } catch (error) {
          if (epoch !== this.#epoch) {
            // The connection went meanwhile: what the engine holds now was set by open(); the topics are looked at again.
            for (const topic of [...drop, ...add]) this.#marked.add(topic.id);
            continue;
          }
          this.#engine.failed(error);
          // Tried again after a while: the topics are marked again, and held is what it was.
          for (const topic of drop) {
            this.#held.add(topic.id);
            this.#marked.add(topic.id);
          }
          for (const topic of add) this.#marked.add(topic.id);
          if (this.#open) {
            this.#retryTimer = setTimeout(() => {
              this.#retryTimer = undefined;
              this.#run();
            }, this.#engine.retryDelay(this.#attempt++));
          }
          return;
        }
        // Confirmed on a connection that has gone since: looked at again against what the new one holds.
        if (epoch !== this.#epoch) for (const topic of [...drop, ...add]) this.#marked.add(topic.id);
      }
    } finally {
      this.#running = false;
      if (this.idle) this.#onIdle();
    }
  }
}
