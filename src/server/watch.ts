import type { Gap } from '../core/backplane-port.js';
import { HeraldError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import type { Change, CloseReason, ObserverCallback, Subscription } from '../core/types.js';
import { noSession, variableKey, type SessionStoreLike, type StoreWatchOptions, type VariableEntry } from '../store/store.js';
import { changeFields, changeMembers, cursorScope, type ChangeFields, type EncodedChange, type WatchHistory } from './history.js';

/** Why a watch ended (DESIGN 9.2). */
export type EndReason = 'session-ended' | 'slow-consumer' | 'token-expired' | 'server-closing' | 'unsubscribed' | 'store-unavailable';

/** What a watch asks for: a session, all of it or some names, from now, with current values, or from a cursor. */
export interface WatchSpec {
  readonly session: string;
  /** undefined: every variable of the session. */
  readonly names: readonly string[] | undefined;
  readonly includeCurrent: boolean;
  readonly cursor: string | undefined;
}

/**
 * One event for a watcher: `position` is its place in the history (its
 * cursor is the watch's scope, a dot, and this), `members` its JSON members
 * after the cursor, without braces. A change's event is one object for every watcher
 * of it, delivered to them one after another: a transport may encode it once
 * (with the watch's cursor scope) and reuse the bytes while the same object
 * and scope come back.
 */
export type WatchEvent =
  | { readonly type: 'change'; readonly position: string; readonly members: string; readonly fields: ChangeFields }
  | { readonly type: 'gap'; readonly position: string; readonly members: string; readonly snapshot: readonly SnapshotEntry[] };

/** A variable in a gap's snapshot. */
export interface SnapshotEntry {
  readonly name: string;
  readonly value: JsonValue;
  readonly version: number;
}

/** Where a watch's events go: a transport's connection. */
export interface WatchSink {
  /** The watch is registered: nothing committed from now on is missed. Called once, before any event. */
  started(): void;
  /** An event; its cursor is `${scope}.${event.position}`. */
  event(event: WatchEvent, scope: string): void;
  /** The watch is over; nothing follows. */
  end(reason: EndReason): void;
}

/** What every watch of a server shares. */
export interface WatchContext {
  readonly store: SessionStoreLike;
  readonly history: WatchHistory;
  /** `maxHeldChanges`: changes a watch holds while it reads current values at most; past it the watch ends as a slow consumer. */
  readonly limits: { readonly maxHeldChanges: number };
}

/**
 * One watcher's view of a session: its observers on the store, and the
 * ordering rules of DESIGN 9.2 — live from the moment `start` resolves;
 * current values, a replay from a cursor, or a gap with a snapshot before any
 * later change; none missed, none twice.
 *
 * While it starts (or re-reads after a gap) its observers are registered and
 * hold what arrives; what was read (the history after the cursor, or the
 * store's current values) goes out first, then the held changes that it does
 * not already cover: by seq after a replay, by version after a read.
 */
export class Watch {
  #subs: Subscription[] = [];
  /** Changes that arrived while starting or re-reading; undefined while live. */
  #held: Change[] | undefined = [];
  /** After a read: name → version read; a change not newer is covered by what was sent. */
  #seen: Map<string, number> | undefined;
  /** After a replay: changes up to this seq were sent. */
  #sentSeq = 0;
  #ended: EndReason | undefined;
  /** Whether `sink.started` was called: from then on the watch ends with `sink.end`, before it `start` rejects. */
  #started = false;
  /** The last gap handled: each name's observer reports the same one. */
  #lastGap: Gap | undefined;
  /** A gap arrived while the watch was reading: read again once done. */
  #gapAgain = false;
  readonly #names: ReadonlySet<string> | undefined;
  /** The first part of this watch's cursors: they resume only a watch of the same session and names. */
  readonly scope: string;

  private constructor(readonly context: WatchContext, readonly spec: WatchSpec, readonly sink: WatchSink) {
    this.#names = spec.names === undefined ? undefined : new Set(spec.names);
    this.scope = cursorScope(spec.session, spec.names);
  }

  /**
   * Starts a watch; rejects (having registered nothing, and before
   * `sink.started`) with the store's error for a session that does not exist
   * or a name it refuses.
   */
  static async start(context: WatchContext, spec: WatchSpec, sink: WatchSink, label: string): Promise<Watch> {
    const watch = new Watch(context, spec, sink);
    await watch.#start(label);
    return watch;
  }

  /** Why it ended, or undefined while it runs. */
  get ended(): EndReason | undefined {
    return this.#ended;
  }

  /** Ends the watch: its observers go, and the sink gets `end` with `reason` (once). */
  end(reason: EndReason): void {
    if (this.#ended !== undefined) return;
    this.#ended = reason;
    this.#held = undefined;
    for (const sub of this.#subs) sub.unsubscribe();
    // Before the watcher was told it is live, it gets an error from `start` instead (see #start).
    if (this.#started) this.sink.end(reason);
  }

  async #start(label: string): Promise<void> {
    const { store, history } = this.context;
    const { session, names, cursor } = this.spec;
    const onChange: ObserverCallback<JsonValue | undefined> = (change) => this.#take(change);
    const options: StoreWatchOptions = {
      label,
      onClose: (reason: CloseReason) => this.#closed(reason),
      onGap: (gap: Gap) => this.#gap(gap),
    };
    try {
      if (names === undefined) this.#subs.push(await store.watchSession(session, onChange, options));
      else for (const name of names) this.#subs.push(await store.watch(session, name, onChange, options));
      if (this.#ended !== undefined) throw endedBeforeStart(this.#ended, session);
      this.#started = true;
      this.sink.started();
      const replay = cursor === undefined ? undefined : history.since(cursor, this.scope, (entry) => this.#accepts(entry));
      if (replay !== undefined) {
        // The history is never behind the hub: what it holds and the held changes cover everything, and seqs tell the overlap.
        for (const entry of replay) this.sink.event(entry, this.scope);
        this.#sentSeq = history.last;
        this.#release();
      } else if (cursor !== undefined || this.spec.includeCurrent) {
        await this.#read(cursor !== undefined ? 'gap' : 'current');
      } else {
        this.#release();
      }
    } catch (error) {
      // Once the watcher was told it is live, a failure ends the watch; before, the watcher gets the error.
      if (this.#started) return this.end('store-unavailable');
      this.#ended = 'unsubscribed';
      for (const sub of this.#subs) sub.unsubscribe();
      throw error;
    }
  }

  /** Reads the watched variables and sends them (as a gap's snapshot, or as changes from unset), then what was held. */
  async #read(as: 'gap' | 'current'): Promise<void> {
    const { store, history } = this.context;
    const position = history.position;
    let entries: VariableEntry[];
    try {
      entries = (await store.list(this.spec.session)).filter((entry) => entry.value !== undefined && (this.#names?.has(entry.name) ?? true));
    } catch (error) {
      // The session went meanwhile: its end is on its way through the observers.
      if (!(error instanceof HeraldError && error.code === 'HERALD_NO_SESSION')) throw error;
      entries = [];
    }
    if (this.#ended !== undefined) return;
    this.#seen = new Map(entries.map((entry) => [entry.name, entry.version]));
    this.#sentSeq = 0;
    if (as === 'gap') {
      const snapshot = entries.map((entry) => ({ name: entry.name, value: entry.value!, version: entry.version }));
      this.sink.event({ type: 'gap', position, members: `"snapshot":${JSON.stringify(snapshot)}`, snapshot }, this.scope);
    } else {
      const at = Date.now();
      for (const entry of entries) {
        const fields = changeFields(variableKey(this.spec.session, entry.name), this.spec.session, entry.name, undefined, entry.value, entry.version, at, { current: true });
        this.sink.event({ type: 'change', position, members: changeMembers(fields), fields }, this.scope);
      }
    }
    this.#release();
  }

  /** Sends what was held, and goes live; reads again if a gap came meanwhile. */
  #release(): void {
    const held = this.#held;
    this.#held = undefined;
    if (held !== undefined) for (const change of held) this.#send(change);
    if (this.#gapAgain && this.#ended === undefined) {
      this.#gapAgain = false;
      this.#resync();
    }
  }

  /** Reads again after a gap; a store that cannot be read ends the watch. */
  #resync(): void {
    this.#held = [];
    this.#read('gap').catch(() => this.end('store-unavailable'));
  }

  #take(change: Change<JsonValue | undefined>): void {
    const held = this.#held;
    if (held === undefined) return this.#send(change);
    if (held.length >= this.context.limits.maxHeldChanges) return this.end('slow-consumer');
    held.push(change);
  }

  #send(change: Change): void {
    if (this.#ended !== undefined || change.seq <= this.#sentSeq) return;
    const entry = this.context.history.encode(change);
    if (entry === undefined || !this.#accepts(entry)) return;
    const seen = this.#seen;
    if (seen !== undefined) {
      const version = seen.get(entry.fields.name);
      if (version !== undefined) {
        if (entry.fields.version <= version) return;
        seen.delete(entry.fields.name);
      }
    }
    this.sink.event(entry, this.scope);
  }

  #accepts(entry: EncodedChange): boolean {
    return entry.fields.session === this.spec.session && (this.#names?.has(entry.fields.name) ?? true);
  }

  #gap(gap: Gap): void {
    this.context.history.breakReplay(gap);
    if (this.#ended !== undefined || gap === this.#lastGap) return;
    this.#lastGap = gap;
    if (this.#held !== undefined) {
      this.#gapAgain = true;
      return;
    }
    this.#resync();
  }

  #closed(reason: CloseReason): void {
    if (this.#ended !== undefined) return;
    this.end(reason === 'session-ended' ? 'session-ended' : reason === 'slow-consumer' ? 'slow-consumer' : reason === 'hub-closed' ? 'server-closing' : 'unsubscribed');
  }
}

/** Why a watch that ended while it registered could not start: the error its watcher gets. */
function endedBeforeStart(reason: EndReason, session: string): HeraldError {
  if (reason === 'session-ended') return noSession(session);
  if (reason === 'server-closing') return new HeraldError('HERALD_CLOSED', 'the server is closing');
  return new HeraldError('HERALD_STORE', `the watch ended before it started: ${reason}`);
}
