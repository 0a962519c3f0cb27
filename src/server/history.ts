import { createHash } from 'node:crypto';
import diagnostics_channel from 'node:diagnostics_channel';
import type { Gap } from '../core/backplane-port.js';
import type { Change } from '../core/types.js';
import type { ObserverManager } from '../hub/observer-manager.js';
import type { NotifyMessage } from '../stats/diagnostics.js';

/** A change's fields with its values as JSON text (absent: unset), as every transport sends them. */
export interface ChangeFields {
  readonly key: string;
  readonly session: string;
  readonly name: string;
  readonly oldJson: string | undefined;
  readonly newJson: string | undefined;
  readonly version: number;
  readonly at: number;
  readonly metaJson: string;
}

/** A store change as watchers receive it, encoded once for all of them. */
export interface EncodedChange {
  readonly type: 'change';
  readonly seq: number;
  /** Where in the history it is; a watcher's cursor is its watch's scope and this. */
  readonly position: string;
  readonly fields: ChangeFields;
  /**
   * `"key":…,"session":…,…` — the change event's JSON members after its
   * cursor, without braces: each transport puts its own (`type`, `id`,
   * `cursor`) in front.
   */
  readonly members: string;
}

/** The scope part of a watch's cursors: its session and names (in any order), hashed. */
export function cursorScope(session: string, names: readonly string[] | undefined): string {
  const what = JSON.stringify(names === undefined ? [session] : [session, [...new Set(names)].sort()]);
  return createHash('sha256').update(what).digest('base64url').slice(0, 12);
}

/** Limits of the replay history: changes kept (0 keeps none) and their encoded bytes at most. */
export interface HistoryLimits {
  readonly events: number;
  readonly bytes: number;
}

/**
 * The server's memory of recent store changes, so a watcher that reconnects
 * with its last cursor gets what it missed. Every change the hub accepts is
 * recorded at the moment it is accepted (through `herald:notify`), so the
 * history is never behind the hub: a watch registered at any instant is
 * covered either by the history (before) or by its observer (after).
 *
 * A cursor is `<scope>.<epoch>.<generation>.<seq>`: `scope` names the
 * watch it was handed to (its session and names: a cursor used on another
 * watch cannot be replayed, as that watch may lack state the first one had
 * not asked for), `epoch` this server's run (another run's or another node's
 * cursor cannot be replayed either), `generation` moves when the hub reports
 * a gap (changes of other nodes may be missing, so no earlier cursor can be
 * replayed), and `seq` is the hub's. The part after the scope is a position.
 */
export class WatchHistory {
  readonly epoch: string = Math.random().toString(36).slice(2, 10);
  #generation = 0;
  /** The oldest kept entry is at `#head`; entries are in seq order. */
  #entries: EncodedChange[] = [];
  #head = 0;
  #bytes = 0;
  /** A cursor below this seq (of this generation) can no longer be replayed. */
  #floor = 0;
  #last = 0;
  readonly #encoded = new WeakMap<Change, EncodedChange>();
  readonly #gaps = new WeakSet<Gap>();
  readonly #listener = (message: unknown): void => {
    const { hub, change } = message as NotifyMessage;
    if (hub === this.hub) this.#record(change);
  };

  constructor(readonly hub: ObserverManager, readonly limits: HistoryLimits) {
    diagnostics_channel.subscribe('herald:notify', this.#listener);
  }

  /** The position of "now": every change recorded so far is before it. */
  get position(): string {
    return this.#position(this.#last);
  }

  /** The seq of the newest recorded change. */
  get last(): number {
    return this.#last;
  }

  /**
   * The changes after `cursor` that `accepts`, oldest first; undefined when
   * they cannot be told (the cursor is malformed, of another watch's `scope`,
   * from another run or node, from before a gap, or older than what is kept).
   */
  since(cursor: string, scope: string, accepts: (entry: EncodedChange) => boolean): EncodedChange[] | undefined {
    const seq = this.#parse(cursor, scope);
    if (seq === undefined || seq < this.#floor || seq > this.#last) return undefined;
    const changes: EncodedChange[] = [];
    const entries = this.#entries;
    // Entries are in seq order: start at the first after `seq`.
    let lo = this.#head;
    let hi = entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (entries[mid]!.seq <= seq) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < entries.length; i++) {
      if (accepts(entries[i]!)) changes.push(entries[i]!);
    }
    return changes;
  }

  /** The change as watchers receive it; undefined for a change that is not a store variable's. */
  encode(change: Change): EncodedChange | undefined {
    return this.#encoded.get(change) ?? this.#encodeNew(change);
  }

  /**
   * Changes of other nodes may be missing: no cursor handed out so far can be
   * replayed. Each gap counts once, however many observers report it.
   */
  breakReplay(gap: Gap): void {
    if (this.#gaps.has(gap)) return;
    this.#gaps.add(gap);
    this.#generation++;
    this.#floor = this.#last;
    this.#entries = [];
    this.#head = 0;
    this.#bytes = 0;
  }

  close(): void {
    diagnostics_channel.unsubscribe('herald:notify', this.#listener);
    this.#entries = [];
    this.#head = 0;
  }

  #record(change: Change): void {
    const entry = this.#encodeNew(change);
    if (entry === undefined) return;
    this.#last = entry.seq;
    const { events, bytes } = this.limits;
    if (events === 0) {
      this.#floor = entry.seq;
      return;
    }
    this.#entries.push(entry);
    this.#bytes += sizeOf(entry);
    while (this.#entries.length - this.#head > events || (this.#bytes > bytes && this.#entries.length - this.#head > 0)) {
      const gone = this.#entries[this.#head]!;
      this.#entries[this.#head++] = undefined as unknown as EncodedChange;
      this.#bytes -= sizeOf(gone);
      this.#floor = gone.seq;
    }
    // Compact once the dead prefix is as long as what is kept.
    if (this.#head > 1024 && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
  }

  #encodeNew(change: Change): EncodedChange | undefined {
    const { sessionId, name, version, ...rest } = change.meta as Record<string, unknown>;
    if (typeof sessionId !== 'string' || typeof name !== 'string' || typeof version !== 'number' || change.seq === 0) return undefined;
    const fields = changeFields(change.key, sessionId, name, change.oldValue, change.newValue, version, change.at, rest);
    const entry: EncodedChange = { type: 'change', seq: change.seq, position: this.#position(change.seq), fields, members: changeMembers(fields) };
    this.#encoded.set(change, entry);
    return entry;
  }

  #position(seq: number): string {
    return `${this.epoch}.${this.#generation}.${seq}`;
  }

  #parse(cursor: string, scope: string): number | undefined {
    const match = /^([A-Za-z0-9_-]{1,32})\.([a-z0-9]{1,16})\.(\d{1,9})\.(\d{1,16})$/.exec(cursor);
    if (match === null || match[1] !== scope || match[2] !== this.epoch || Number(match[3]) !== this.#generation) return undefined;
    return Number(match[4]);
  }
}

/** A change's fields, its values as JSON text. */
export function changeFields(
  key: string, session: string, name: string, oldValue: unknown, newValue: unknown, version: number, at: number, meta: unknown,
): ChangeFields {
  return {
    key, session, name, version, at,
    oldJson: oldValue === undefined ? undefined : JSON.stringify(oldValue),
    newJson: newValue === undefined ? undefined : JSON.stringify(newValue),
    metaJson: JSON.stringify(meta),
  };
}

/**
 * A change event's JSON members after its cursor (DESIGN 9.2), without
 * braces. An unset old or new value (a first set, a delete) is left out: JSON
 * has no undefined, and null is a value.
 */
export function changeMembers(f: ChangeFields): string {
  let members = `"key":${JSON.stringify(f.key)},"session":${JSON.stringify(f.session)},"name":${JSON.stringify(f.name)}`;
  if (f.oldJson !== undefined) members += `,"oldValue":${f.oldJson}`;
  if (f.newJson !== undefined) members += `,"newValue":${f.newJson}`;
  return `${members},"version":${f.version},"at":${f.at},"meta":${f.metaJson}`;
}

/** What an entry holds, roughly, in characters: its members and its fields' JSON. */
function sizeOf(entry: EncodedChange): number {
  return 2 * entry.members.length;
}
