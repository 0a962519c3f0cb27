import { AsyncLocalStorage } from 'node:async_hooks';
import { HeraldError, InvalidArgumentError, InvalidValueError, TimeoutError } from '../core/errors.js';
import type { PendingNotifications } from '../delivery/pending.js';
import type { ObserverManager } from '../hub/observer-manager.js';
import { assertCallback, assertOptions, copyOptions, isPlainObject, optionalDuration } from '../core/assert.js';
import { tracking } from '../core/tracking.js';
import type { ObserveOptions, ObserverCallback, Subscription } from '../core/types.js';
import { isStoreText, jsonEqual, toJson, type JsonRules, type JsonValue } from '../core/json.js';
import { isStandardSchema, type StandardSchemaV1 } from './standard-schema.js';
import { watchVariable } from './watch.js';
import { AnnouncementOrder, type Ticket } from './announcement-order.js';

export const MAX_ID_LENGTH = 256;
export const MAX_NAME_LENGTH = 256;
export const DEFAULT_EXPIRY_CHECK_MS = 1000;
export const DEFAULT_TRANSACTION_TIMEOUT_MS = 30_000;

/** One open transaction of one store, as the code running inside it sees it. */
interface TransactionFrame {
  readonly sessionId: string;
  /** False once the transaction is over: work it started that runs later is no longer inside it. */
  open: boolean;
}

/** A session as a store reports it. Times are epoch milliseconds; `expiresAt` is undefined for a session without TTL. */
export interface SessionInfo {
  readonly id: string;
  readonly createdAt: number;
  readonly expiresAt: number | undefined;
  readonly meta: JsonValue;
}

/** Options of `createSession`. */
export interface CreateSessionOptions {
  /** Lifetime from now (and from each `touch`). @default the store's `defaultTtlMs` */
  readonly ttlMs?: number;
  /** Anything JSON can carry, kept with the session. */
  readonly meta?: unknown;
}

/** Options of `defineVariable`. */
export interface VariableDefinition {
  /** Any Standard Schema validator (zod, valibot, ...): every value set is checked by it, and its output is stored. */
  readonly schema?: StandardSchemaV1;
  /** A first value, set (and announced) at definition. */
  readonly initial?: unknown;
}

/** What `set` returns. `version` grows by one per real change of the variable; an equal value keeps it. */
export interface SetResult {
  readonly oldValue: JsonValue | undefined;
  readonly newValue: JsonValue;
  readonly version: number;
}

/** One variable as `list` reports it. */
export interface VariableEntry {
  readonly name: string;
  readonly value: JsonValue | undefined;
  readonly version: number;
}

/** Options of `watch` and `watchSession`. */
export interface StoreWatchOptions extends ObserveOptions {
  /**
   * Deliver the current value first (as a change from `undefined`, `seq` 0,
   * `meta.current` true), then every later change, with no gap and no
   * duplicate even while writes race with the call.
   */
  readonly includeCurrent?: boolean;
}

/** What a transaction's function works with: reads see the transaction's own writes. */
export interface TransactionContext {
  /** Shared by every change the transaction announces (`meta.txId`). */
  readonly txId: string;
  get(name: string): Promise<JsonValue | undefined>;
  /** The variable with its version (for a compare-and-set), or undefined when it does not exist. */
  entry(name: string): Promise<{ readonly value: JsonValue | undefined; readonly version: number } | undefined>;
  set(name: string, value: unknown, meta?: Readonly<Record<string, unknown>>): Promise<SetResult>;
  delete(name: string): Promise<boolean>;
}

/**
 * The contract both session stores implement (and `storeSuite` checks).
 * Every change is announced through the hub, once, and only after it is
 * durable: a transaction that throws announces nothing.
 */
export interface SessionStoreLike {
  readonly hub: ObserverManager;
  createSession(sessionId: string, options?: CreateSessionOptions): Promise<SessionInfo>;
  getSession(sessionId: string): Promise<SessionInfo | undefined>;
  /** Extends the session's TTL from now. */
  touch(sessionId: string, ttlMs?: number): Promise<SessionInfo>;
  /** Removes the session and its variables, announces each removal, and ends its watchers (`"session-ended"`). */
  deleteSession(sessionId: string): Promise<boolean>;
  listSessions(): Promise<SessionInfo[]>;
  defineVariable(sessionId: string, name: string, definition?: VariableDefinition): Promise<void>;
  set(sessionId: string, name: string, value: unknown, meta?: Readonly<Record<string, unknown>>): Promise<SetResult>;
  get(sessionId: string, name: string): Promise<JsonValue | undefined>;
  delete(sessionId: string, name: string): Promise<boolean>;
  list(sessionId: string): Promise<VariableEntry[]>;
  watch(sessionId: string, name: string, callback: ObserverCallback<JsonValue | undefined>, options?: StoreWatchOptions): Promise<Subscription>;
  watchSession(sessionId: string, callback: ObserverCallback<JsonValue | undefined>, options?: StoreWatchOptions): Promise<Subscription>;
  transaction<R>(sessionId: string, fn: (tx: TransactionContext) => Promise<R> | R): Promise<R>;
  /** Removes expired sessions now, as the expiry timer does; returns how many. */
  expireSessions(): Promise<number>;
  close(): Promise<void>;
  /** True once `close()` has been called. */
  readonly closed?: boolean;
}

/** The hub key of a variable. Both parts are URI-encoded (and `*` too), so keys and session patterns stay unambiguous. */
export function variableKey(sessionId: string, name: string): string {
  return `session/${encodePart(sessionId)}/${encodePart(name)}`;
}

/** The hub pattern of every variable of a session. */
export function sessionPattern(sessionId: string): string {
  return `session/${encodePart(sessionId)}/*`;
}

function encodePart(part: string): string {
  return encodeURIComponent(part).replaceAll('*', '%2A');
}

// ---- what an engine provides ----

/** A variable's stored state, as a store's engine keeps it. `value` undefined: defined but never set. */
export interface StoredVariable {
  readonly value: JsonValue | undefined;
  readonly version: number;
}

/** One real change made inside a unit of work. */
export interface VariableChange {
  readonly name: string;
  /** What the caller passed with this write (a transaction's `tx.set(name, value, meta)`). */
  readonly meta?: Record<string, unknown>;
  readonly oldValue: JsonValue | undefined;
  readonly newValue: JsonValue | undefined;
  readonly version: number;
}

/**
 * The engine side of one atomic unit of work on one session: an in-memory
 * store buffers under a per-session lock; PostgreSQL runs a transaction with
 * row locks. Nothing a unit did is visible to observers until it commits.
 */
/**
 * Which sessions a unit may run on: `live` ones only; also `ending` ones
 * (expired, being ended), waiting for their lock; or, for the expiry sweep,
 * expired ones whose lock is free now (`sweeping`: a held one is skipped as
 * absent, for a later sweep).
 */
export type UnitAccess = 'live' | 'ending' | 'sweeping';

export interface Unit {
  /** Reads (and, where the engine locks, locks) a variable; undefined when it does not exist. */
  read(name: string): Promise<StoredVariable | undefined>;
  /** Stores a variable: `value` undefined defines it unset. The caller decides the version. */
  write(name: string, value: JsonValue | undefined, version: number): Promise<void>;
  /** Removes a variable; `version` is the one its removal was announced with, kept so that a new variable of that name goes on from it. */
  remove(name: string, version: number): Promise<void>;
  /** The version a removed variable of that name ended at (this unit's own removals included), or 0: where a new one goes on from. */
  tombstone(name: string): Promise<number>;
  /** Removes the session and returns its variables as they were. */
  dropSession(): Promise<{ name: string; value: JsonValue | undefined; version: number }[]>;
}

/** Options every store takes. */
export interface StoreOptions {
  readonly hub: ObserverManager;
  /** TTL of a session created without one; undefined: sessions do not expire. */
  readonly defaultTtlMs?: number;
  /** When true, `set` on a variable never defined fails with `HERALD_NO_VARIABLE`; otherwise `set` defines it. @default false */
  readonly strict?: boolean;
  /** How often the unref'd expiry timer looks for expired sessions; 0 turns it off. @default 1000 */
  readonly expiryCheckMs?: number;
  /**
   * How long a `transaction(id, fn)` may hold its session: past it the
   * transaction is rolled back and rejects with `HERALD_TIMEOUT`, and its
   * `tx` refuses further calls with `HERALD_SETTLED`. Infinity waits for ever.
   * @default 30000
   */
  readonly transactionTimeoutMs?: number;
}

let txCounter = 0;

/**
 * What both stores share: validation, schemas, keys, watching with
 * `includeCurrent`, and the one place every mutation goes through
 * (`#mutate`), which announces a unit's changes only after it commits.
 * An engine implements the `do*` methods.
 */
export abstract class SessionStoreBase implements SessionStoreLike {
  readonly hub: ObserverManager;
  readonly #defaultTtlMs: number | undefined;
  readonly #strict: boolean;
  /** Schemas live in this process (a validator is code, not data). */
  readonly #schemas = new Map<string, Map<string, StandardSchemaV1>>();
  /** The watchers this store made, per session, to end them with `"session-ended"`. */
  readonly #watchers = new Map<string, Set<Subscription>>();
  #expiryTimer: NodeJS.Timeout | undefined;
  readonly #order = new AnnouncementOrder();
  readonly #transactionTimeoutMs: number;
  /** The transactions of this store the running code is inside of: changing their session from there would wait for itself. */
  readonly #inTransaction = new AsyncLocalStorage<readonly TransactionFrame[]>();
  /** Watcher sets of sessions that have ended: a watcher still registering into one ends as it arrives. */
  readonly #endedSets = new WeakSet<Set<Subscription>>();
  /**
   * The `createdAt` of the session each watcher set watches: a session with
   * the same id made again (by another process, after deleting it) is
   * another session, and the old one's watchers end.
   */
  readonly #createdAt = new WeakMap<Set<Subscription>, number>();
  #closed = false;

  protected constructor(given: StoreOptions) {
    const options = copyOptions(given, 'options')!;
    if (typeof options?.hub?.notify !== 'function' || typeof options.hub.defer !== 'function') {
      throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.hub', 'an ObserverManager', options?.hub);
    }
    if (options.defaultTtlMs !== undefined) assertTtl(options.defaultTtlMs, 'options.defaultTtlMs');
    if (options.strict !== undefined && typeof options.strict !== 'boolean') {
      throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'options.strict', 'a boolean or undefined', options.strict);
    }
    optionalDuration(options.expiryCheckMs, 'options.expiryCheckMs', 0, false);
    optionalDuration(options.transactionTimeoutMs, 'options.transactionTimeoutMs', 1, true);
    this.#transactionTimeoutMs = options.transactionTimeoutMs ?? DEFAULT_TRANSACTION_TIMEOUT_MS;
    const check = options.expiryCheckMs ?? DEFAULT_EXPIRY_CHECK_MS;
    this.hub = options.hub;
    this.#defaultTtlMs = options.defaultTtlMs;
    this.#strict = options.strict ?? false;
    if (check > 0) {
      const store = new WeakRef(this);
      const timer = setInterval(() => {
        const self = store.deref();
        if (self === undefined) clearInterval(timer);
        else void self.expireSessions().catch(() => {}); // a failed sweep is retried by the next one
      }, check).unref();
      this.#expiryTimer = timer;
    }
  }

  // ---- what an engine implements ----

  /** Creates a session; undefined when one with that id exists (expired ones have been ended before this is called). */
  protected abstract doCreateSession(sessionId: string, expiresAt: number | undefined, meta: JsonValue): Promise<SessionInfo | undefined>;
  protected abstract doGetSession(sessionId: string): Promise<SessionInfo | undefined>;
  protected abstract doTouch(sessionId: string, expiresAt: number | undefined): Promise<SessionInfo | undefined>;
  protected abstract doListSessions(): Promise<SessionInfo[]>;
  protected abstract doGet(sessionId: string, name: string): Promise<StoredVariable | undefined>;
  protected abstract doList(sessionId: string): Promise<VariableEntry[] | undefined>;
  /** The ids of sessions whose time is up. */
  protected abstract doExpiredSessions(now: number): Promise<string[]>;
  /**
   * Which of `ids` still exist, with their `createdAt`: where other processes
   * share the engine, a session this store has watchers on may have been
   * ended, or ended and made again, by one of them. The default asks for
   * each; an engine may ask for all at once.
   */
  protected async doExistingSessions(ids: readonly string[]): Promise<Map<string, number>> {
    const found = await Promise.all(ids.map((id) => this.doGetSession(id)));
    return new Map(found.filter((info) => info !== undefined).map((info) => [info.id, info.createdAt]));
  }

  /**
   * Runs `work` as one atomic unit on a living session, holding its lock;
   * resolves after it is durable. Rejects `HERALD_NO_SESSION` for a missing
   * session, and for an expired one unless `access` allows it (see
   * {@link UnitAccess}). `prefetch` names the variable the unit will read
   * first, for an engine that can fetch it together with the session (one
   * round trip fewer). `announcements()`, asked once `work` is done and
   * before the commit, gives the unit's pending announcements (an engine
   * with an outbox writes them in the same transaction). `locked` must be
   * called as soon as the lock is held: the announcements of a session's
   * units follow the order of those calls.
   */
  protected abstract doUnit<R>(
    sessionId: string, work: (unit: Unit) => Promise<R>, access: UnitAccess, prefetch: string | undefined,
    announcements: () => PendingNotifications | undefined, locked: () => void,
  ): Promise<R>;
  protected abstract doClose(): Promise<void>;

  // ---- sessions ----

  async createSession(sessionId: string, given?: CreateSessionOptions): Promise<SessionInfo> {
    this.#assertOpen();
    assertId(sessionId);
    const options = copyOptions(given, 'options');
    const ttlMs = options?.ttlMs ?? this.#defaultTtlMs;
    if (ttlMs !== undefined) assertTtl(ttlMs, 'options.ttlMs');
    const meta = options?.meta === undefined ? null : toJson(options.meta, 'options.meta', STORE_TEXT);
    // An expired session not yet swept ends first, as the sweep would end it: announced, its watchers ended.
    const existing = await this.doGetSession(sessionId);
    if (existing !== undefined && isExpired(existing)) await this.#endSession(sessionId, 'expired');
    const info = await this.doCreateSession(sessionId, ttlMs === undefined ? undefined : Date.now() + ttlMs, meta);
    if (info === undefined) throw new HeraldError('HERALD_SESSION_EXISTS', `session ${JSON.stringify(sessionId)} exists already`);
    return info;
  }

  async getSession(sessionId: string): Promise<SessionInfo | undefined> {
    assertId(sessionId);
    const info = await this.doGetSession(sessionId);
    return info !== undefined && isExpired(info) ? undefined : info;
  }

  async touch(sessionId: string, ttlMs?: number): Promise<SessionInfo> {
    this.#assertOpen();
    assertId(sessionId);
    this.#assertNotInside(sessionId);
    if (ttlMs !== undefined) assertTtl(ttlMs, 'ttlMs');
    const current = await this.getSession(sessionId);
    if (current === undefined) throw noSession(sessionId);
    const lifetime = ttlMs ?? (current.expiresAt === undefined ? undefined : this.#defaultTtlMs ?? current.expiresAt - current.createdAt);
    const info = await this.doTouch(sessionId, lifetime === undefined ? undefined : Date.now() + lifetime);
    if (info === undefined) throw noSession(sessionId);
    return info;
  }

  async deleteSession(sessionId: string): Promise<boolean> {
    this.#assertOpen();
    assertId(sessionId);
    return this.#endSession(sessionId, 'deleted');
  }

  async listSessions(): Promise<SessionInfo[]> {
    return (await this.doListSessions()).filter((info) => !isExpired(info));
  }

  async expireSessions(): Promise<number> {
    if (this.#closed) return 0;
    // Side by side, and never waiting: a session held by a transaction is skipped, and ended by a later sweep.
    const expired = await this.doExpiredSessions(Date.now());
    const results = await Promise.allSettled(expired.map((id) => this.#endSession(id, 'expired', true)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    // Sessions ended elsewhere (another process on the same engine): their watchers here end too.
    // Each set is judged by the session its watchers read, as it was before the query: a set none of whose
    // watchers has read its session yet is left to a later sweep (the query may be older than their reads).
    const watched = [...this.#watchers]
      .map(([id, set]) => [id, set, this.#createdAt.get(set)] as const)
      .filter((entry): entry is readonly [string, Set<Subscription>, number] => entry[2] !== undefined);
    if (watched.length > 0) {
      const alive = await this.doExistingSessions(watched.map(([id]) => id));
      for (const [id, set, createdAt] of watched) if (alive.get(id) !== createdAt) this.#endSet(id, set);
    }
    return results.filter((r) => r.status === 'fulfilled' && r.value).length;
  }

  // ---- variables ----

  async defineVariable(sessionId: string, name: string, definition?: VariableDefinition): Promise<void> {
    this.#assertOpen();
    assertId(sessionId);
    assertName(name);
    assertOptions(definition, 'definition');
    const schema = definition?.schema;
    if (schema !== undefined && !isStandardSchema(schema)) {
      throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', 'definition.schema', 'a Standard Schema validator (zod, valibot, ...)', schema);
    }
    const initial = definition !== undefined && 'initial' in definition && definition.initial !== undefined
      ? await this.#validated(schema, definition.initial, 'definition.initial')
      : undefined;
    await this.#mutate(sessionId, {}, async (unit, changes) => {
      const current = await unit.read(name);
      if (initial === undefined || (current?.value !== undefined && jsonEqual(current.value, initial))) {
        if (current === undefined) await unit.write(name, undefined, await unit.tombstone(name));
        return;
      }
      const version = (current?.version ?? (await unit.tombstone(name))) + 1;
      await unit.write(name, initial, version);
      changes.push({ name, oldValue: current?.value, newValue: initial, version });
    }, { prefetch: name });
    let schemas = this.#schemas.get(sessionId);
    if (schemas === undefined) this.#schemas.set(sessionId, (schemas = new Map<string, StandardSchemaV1>()));
    if (schema === undefined) schemas.delete(name);
    else schemas.set(name, schema);
  }

  async set(sessionId: string, name: string, value: unknown, meta?: Readonly<Record<string, unknown>>): Promise<SetResult> {
    this.#assertOpen();
    assertId(sessionId);
    assertName(name);
    const userMeta = checkMeta(meta);
    const stored = await this.#validated(this.#schemas.get(sessionId)?.get(name), value, 'value');
    return this.#mutate(sessionId, userMeta, (unit, changes) => this.#setIn(unit, sessionId, name, stored, changes), { prefetch: name });
  }

  async get(sessionId: string, name: string): Promise<JsonValue | undefined> {
    assertId(sessionId);
    assertName(name);
    if ((await this.getSession(sessionId)) === undefined) throw noSession(sessionId);
    return (await this.doGet(sessionId, name))?.value;
  }

  async delete(sessionId: string, name: string): Promise<boolean> {
    this.#assertOpen();
    assertId(sessionId);
    assertName(name);
    const removed = await this.#mutate(sessionId, {}, (unit, changes) => this.#deleteIn(unit, name, changes), { prefetch: name });
    if (removed) this.#schemas.get(sessionId)?.delete(name);
    return removed;
  }

  async list(sessionId: string): Promise<VariableEntry[]> {
    assertId(sessionId);
    if ((await this.getSession(sessionId)) === undefined) throw noSession(sessionId);
    const entries = await this.doList(sessionId);
    if (entries === undefined) throw noSession(sessionId);
    return entries;
  }

  async transaction<R>(sessionId: string, fn: (tx: TransactionContext) => Promise<R> | R): Promise<R> {
    this.#assertOpen();
    assertId(sessionId);
    assertCallback(fn, 'fn');
    const txId = `tx-${process.pid}-${Date.now().toString(36)}-${++txCounter}`;
    return this.#mutate(sessionId, { txId }, async (unit, changes) => {
      // A context kept past its transaction must not reach the unit: in PostgreSQL its connection is back in the pool.
      let open = true;
      const assertOpen = (method: string): void => {
        if (!open) throw new HeraldError('HERALD_SETTLED', `cannot \`tx.${method}\`: transaction ${txId} is over`);
      };
      const tx: TransactionContext = {
        txId,
        get: async (name) => {
          assertOpen('get');
          assertName(name);
          const value = (await unit.read(name))?.value;
          assertOpen('get'); // timed out meanwhile: what was read belongs to a transaction that no longer is
          return value;
        },
        entry: async (name) => {
          assertOpen('entry');
          assertName(name);
          const stored = await unit.read(name);
          assertOpen('entry');
          return stored === undefined ? undefined : { value: stored.value, version: stored.version };
        },
        set: async (name, value, meta) => {
          assertOpen('set');
          assertName(name);
          const writeMeta = checkMeta(meta);
          const stored = await this.#validated(this.#schemas.get(sessionId)?.get(name), value, 'value');
          assertOpen('set');
          const result = await this.#setIn(unit, sessionId, name, stored, changes, writeMeta);
          assertOpen('set'); // timed out meanwhile: the write was rolled back, never report it made
          return result;
        },
        delete: async (name) => {
          assertOpen('delete');
          assertName(name);
          const deleted = await this.#deleteIn(unit, name, changes);
          assertOpen('delete');
          return deleted;
        },
      };
      const frame: TransactionFrame = { sessionId, open: true };
      const frames = [...(this.#inTransaction.getStore() ?? []), frame];
      const running = Promise.resolve().then(() => this.#inTransaction.run(frames, () => fn(tx)));
      try {
        return await this.#withinTimeout(running, sessionId, txId);
      } finally {
        open = false;
        frame.open = false;
      }
    });
  }

  /** `running`, or a `HERALD_TIMEOUT` once the transaction timeout has passed (the function's later failure is then contained). */
  #withinTimeout<R>(running: Promise<R>, sessionId: string, txId: string): Promise<R> {
    const ms = this.#transactionTimeoutMs;
    if (ms === Infinity) return running;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        running.catch(() => {}); // it goes on running; what it throws later reaches nobody
        reject(new TimeoutError(`transaction ${txId} on session ${JSON.stringify(sessionId)} did not finish within transactionTimeoutMs (${ms} ms): it was rolled back, and its tx refuses further calls`));
      }, ms);
    });
    return Promise.race([running, timeout]).finally(() => clearTimeout(timer));
  }

  // ---- watching ----

  async watch(sessionId: string, name: string, callback: ObserverCallback<JsonValue | undefined>, options?: StoreWatchOptions): Promise<Subscription> {
    this.#assertOpen();
    assertId(sessionId);
    assertName(name);
    assertCallback(callback);
    return this.#watch(sessionId, variableKey(sessionId, name), false, callback, options, async () => {
      const current = await this.doGet(sessionId, name);
      return current === undefined || current.value === undefined ? [] : [{ name, value: current.value, version: current.version }];
    });
  }

  async watchSession(sessionId: string, callback: ObserverCallback<JsonValue | undefined>, options?: StoreWatchOptions): Promise<Subscription> {
    this.#assertOpen();
    assertId(sessionId);
    assertCallback(callback);
    return this.#watch(sessionId, sessionPattern(sessionId), true, callback, options, async () => {
      return ((await this.doList(sessionId)) ?? []).filter((entry) => entry.value !== undefined);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#expiryTimer);
    await this.doClose();
  }

  // ---- the one place every mutation goes through ----

  /**
   * Runs `work` as one unit on `sessionId`; the changes it records are
   * announced after the unit is durable, each with `sessionId`, `name`,
   * `version` and `meta` in its meta, coalesced per variable (first old value,
   * last new value). A unit that fails announces nothing.
   */
  async #mutate<R>(
    sessionId: string, meta: Record<string, unknown>, work: (unit: Unit, changes: VariableChange[]) => Promise<R>,
    { access = 'live', prefetch }: { access?: UnitAccess; prefetch?: string } = {},
  ): Promise<R> {
    this.#assertNotInside(sessionId);
    const changes: VariableChange[] = [];
    let pending: PendingNotifications | undefined;
    let ticket: Ticket | undefined;
    try {
      const result = await this.doUnit(sessionId, async (unit) => {
        const done = await work(unit, changes);
        pending = this.#announcements(sessionId, changes, meta);
        return done;
      }, access, prefetch, () => pending, () => void (ticket = this.#order.enter(sessionId)));
      // Per session (so per key), announcements follow commit order, whatever order the commits' replies came in.
      const turn = ticket === undefined ? undefined : this.#order.turn(ticket);
      if (turn !== undefined) await turn;
      if (pending !== undefined && !this.hub.closed) pending.commit();
      return result;
    } finally {
      if (ticket !== undefined) this.#order.leave(ticket);
    }
  }

  /** The unit's changes as a pending batch: coalesced per variable, each with the version it ended at. */
  #announcements(sessionId: string, changes: readonly VariableChange[], meta: Record<string, unknown>): PendingNotifications | undefined {
    if (changes.length === 0 || this.hub.closed) return undefined;
    const pending = this.hub.defer();
    const last = new Map<string, number>();
    for (const change of changes) last.set(change.name, change.version);
    for (const change of changes) {
      const version = last.get(change.name)!;
      pending.notify(variableKey(sessionId, change.name), change.oldValue, change.newValue, { ...meta, ...change.meta, sessionId, name: change.name, version });
    }
    return pending;
  }

  async #setIn(
    unit: Unit, sessionId: string, name: string, value: JsonValue, changes: VariableChange[], meta?: Record<string, unknown>,
  ): Promise<SetResult> {
    const current = await unit.read(name);
    if (current === undefined && this.#strict) {
      throw new HeraldError('HERALD_NO_VARIABLE', `variable ${JSON.stringify(name)} of session ${JSON.stringify(sessionId)} was never defined (the store is strict)`);
    }
    if (current !== undefined && current.value !== undefined && jsonEqual(current.value, value)) {
      return { oldValue: current.value, newValue: current.value, version: current.version };
    }
    // A variable's version never goes backwards, not even across its deletion and re-creation.
    const version = (current?.version ?? (await unit.tombstone(name))) + 1;
    await unit.write(name, value, version);
    changes.push(meta === undefined ? { name, oldValue: current?.value, newValue: value, version } : { name, oldValue: current?.value, newValue: value, version, meta });
    return { oldValue: current?.value, newValue: value, version };
  }

  async #deleteIn(unit: Unit, name: string, changes: VariableChange[]): Promise<boolean> {
    const current = await unit.read(name);
    if (current === undefined) return false;
    await unit.remove(name, current.version + 1);
    if (current.value !== undefined) changes.push({ name, oldValue: current.value, newValue: undefined, version: current.version + 1 });
    return true;
  }

  async #endSession(sessionId: string, reason: 'deleted' | 'expired', sweeping = false): Promise<boolean> {
    try {
      await this.#mutate(sessionId, { sessionEnded: reason }, async (unit, changes) => {
        for (const v of await unit.dropSession()) {
          if (v.value !== undefined) changes.push({ name: v.name, oldValue: v.value, newValue: undefined, version: v.version + 1 });
        }
      }, { access: reason === 'deleted' ? 'live' : sweeping ? 'sweeping' : 'ending' });
    } catch (error) {
      if (error instanceof HeraldError && error.code === 'HERALD_NO_SESSION') return false;
      throw error;
    }
    this.#schemas.delete(sessionId);
    this.#endWatchers(sessionId);
    return true;
  }

  /** Ends a gone session's watchers, each once the changes announced before (its removals) have reached it. */
  #endWatchers(sessionId: string): void {
    const watchers = this.#watchers.get(sessionId);
    if (watchers !== undefined) this.#endSet(sessionId, watchers);
  }

  #endSet(sessionId: string, watchers: Set<Subscription>): void {
    if (this.#watchers.get(sessionId) === watchers) this.#watchers.delete(sessionId);
    this.#endedSets.add(watchers);
    if (this.hub.closed) return;
    for (const sub of [...watchers]) this.hub.removeAfterQueued(sub, 'session-ended');
  }

  async #watch(
    sessionId: string, keyOrPattern: string, isPattern: boolean, callback: ObserverCallback<JsonValue | undefined>,
    given: StoreWatchOptions | undefined, readCurrent: () => Promise<VariableEntry[]>, stale = false,
  ): Promise<Subscription> {
    const options = copyOptions(given, 'options');
    const { includeCurrent = false, ...observeOptions } = options ?? {};
    // Taken before the session is checked: a session that ends from here on marks this set, and the watcher ends with it.
    let watchers = this.#watchers.get(sessionId);
    if (watchers === undefined) this.#watchers.set(sessionId, (watchers = new Set()));
    const set = watchers;
    const forget = (): void => {
      if (set.size === 0 && this.#watchers.get(sessionId) === set) this.#watchers.delete(sessionId);
    };
    let info: SessionInfo | undefined;
    try {
      info = await this.getSession(sessionId);
      if (info === undefined) throw noSession(sessionId);
    } catch (error) {
      forget();
      throw error;
    }
    const createdAt = this.#createdAt.get(set);
    if (createdAt !== undefined && createdAt !== info.createdAt) {
      forget();
      // A newer session of that id: the set's was ended elsewhere, and its watchers end; this one starts afresh.
      // An older one: this read is stale (another watcher has read the newer one), so it reads again, once.
      if (info.createdAt > createdAt || stale) this.#endSet(sessionId, set);
      return this.#watch(sessionId, keyOrPattern, isPattern, callback, given, readCurrent, info.createdAt < createdAt);
    }
    this.#createdAt.set(set, info.createdAt);
    // Once a session's last watcher goes, nothing of it stays here.
    const tracked = tracking(set, observeOptions, forget);
    const sub = tracked.track(await watchVariable(this.hub, {
      keyOrPattern, isPattern, sessionId, callback, options: tracked.options, includeCurrent, readCurrent,
      keyOf: (name) => variableKey(sessionId, name),
    }));
    forget();
    // The session ended while the watcher was being registered: its watchers were ended without this one.
    if (sub.active && this.#endedSets.has(set) && !this.hub.closed) this.hub.removeAfterQueued(sub, 'session-ended');
    return sub;
  }

  async #validated(schema: StandardSchemaV1 | undefined, value: unknown, arg: string): Promise<JsonValue> {
    if (schema === undefined) return toJson(value, arg, STORE_TEXT);
    const result = await schema['~standard'].validate(value);
    if (result.issues !== undefined) {
      const summary = result.issues.map((issue) => issue.message).join('; ');
      throw new InvalidValueError(`\`${arg}\` was rejected by the variable's schema: ${summary}`, result.issues);
    }
    return toJson(result.value, arg, STORE_TEXT);
  }

  /** Refuses to change a session from inside this store's own open transaction on it, which would wait for itself. */
  #assertNotInside(sessionId: string): void {
    if (this.#inTransaction.getStore()?.some((frame) => frame.open && frame.sessionId === sessionId) === true) {
      throw new HeraldError('HERALD_REENTRANT', `session ${JSON.stringify(sessionId)} cannot be changed from inside its own transaction, which holds it: use the transaction's \`tx\``);
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new HeraldError('HERALD_CLOSED', 'the store is closed');
  }

  /** True once `close()` has been called. */
  get closed(): boolean {
    return this.#closed;
  }
}

// ---- validation ----

/** @internal */
export function noSession(sessionId: string): HeraldError {
  return new HeraldError('HERALD_NO_SESSION', `no session ${JSON.stringify(sessionId)} (never created, deleted, or expired)`);
}

function assertId(sessionId: unknown): asserts sessionId is string {
  assertText(sessionId, 'sessionId', MAX_ID_LENGTH);
}

function assertName(name: unknown): asserts name is string {
  assertText(name, 'name', MAX_NAME_LENGTH);
}

/** Both stores keep every string exactly: no lone surrogate, no NUL (see `isStoreText`). */
const STORE_TEXT: JsonRules = { text: true };

function assertText(value: unknown, arg: string, max: number): void {
  if (typeof value !== 'string' || value.length === 0 || value.length > max || !isStoreText(value)) {
    throw InvalidArgumentError.expected(
      'HERALD_INVALID_ARGUMENT', arg, `a non-empty string of at most ${max} characters, well-formed (no lone surrogate) and without NUL`, value,
    );
  }
}

function assertTtl(ttlMs: unknown, arg: string): void {
  if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs <= 0) {
    throw InvalidArgumentError.expected('HERALD_INVALID_OPTION', arg, 'a finite number of milliseconds > 0', ttlMs);
  }
}

function checkMeta(meta: unknown): Record<string, unknown> {
  if (meta === undefined) return {};
  try {
    if (isPlainObject(meta)) return { ...meta };
  } catch {
    // a getter or Proxy trap of the caller's threw: refused below, like any other bad meta
  }
  throw InvalidArgumentError.expected('HERALD_INVALID_ARGUMENT', 'meta', 'a plain object whose properties can be read, or undefined', meta);
}

/** @internal */
export function isExpired(info: SessionInfo): boolean {
  return info.expiresAt !== undefined && info.expiresAt <= Date.now();
}
