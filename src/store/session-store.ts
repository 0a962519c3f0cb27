import type { JsonValue } from '../core/json.js';
import { isExpired, noSession, SessionStoreBase, type SessionInfo, type StoreOptions, type StoredVariable, type Unit, type UnitAccess, type VariableEntry } from './store.js';

interface MemorySession {
  info: SessionInfo;
  readonly variables: Map<string, StoredVariable>;
  /** Removed variables' last versions: a new variable of that name goes on from there. */
  readonly tombstones: Map<string, number>;
  /** The tail of this session's chain of units: each waits for the one before. */
  lock: Promise<void>;
  /** Whether a unit holds the session now. */
  busy: boolean;
}

/** Stands in a unit's buffer for a variable the unit removed, with the version of its removal. */
class Removed {
  constructor(readonly version: number) {}
}

/**
 * The embedded session store: sessions and variables in memory, changes
 * announced through the hub. Units of work on one session run one at a time,
 * so a transaction's reads and writes are never interleaved with another's.
 *
 * @example
 * ```ts
 * const store = new SessionStore({ hub, defaultTtlMs: 30 * 60_000 });
 * await store.createSession('42');
 * await store.watch('42', 'mode', (change) => console.log(change.newValue), { includeCurrent: true });
 * await store.set('42', 'mode', 'eco');
 * ```
 */
export class SessionStore extends SessionStoreBase {
  readonly #sessions = new Map<string, MemorySession>();

  constructor(options: StoreOptions) {
    super(options);
  }

  protected doCreateSession(sessionId: string, expiresAt: number | undefined, meta: JsonValue): Promise<SessionInfo | undefined> {
    if (this.#sessions.has(sessionId)) return Promise.resolve(undefined);
    const info: SessionInfo = Object.freeze({ id: sessionId, createdAt: Date.now(), expiresAt, meta });
    this.#sessions.set(sessionId, { info, variables: new Map(), tombstones: new Map(), lock: Promise.resolve(), busy: false });
    return Promise.resolve(info);
  }

  protected doGetSession(sessionId: string): Promise<SessionInfo | undefined> {
    return Promise.resolve(this.#sessions.get(sessionId)?.info);
  }

  protected doTouch(sessionId: string, expiresAt: number | undefined): Promise<SessionInfo | undefined> {
    const session = this.#sessions.get(sessionId);
    if (session === undefined || isExpired(session.info)) return Promise.resolve(undefined);
    session.info = Object.freeze({ ...session.info, expiresAt });
    return Promise.resolve(session.info);
  }

  protected doListSessions(): Promise<SessionInfo[]> {
    return Promise.resolve([...this.#sessions.values()].map((session) => session.info));
  }

  protected doGet(sessionId: string, name: string): Promise<StoredVariable | undefined> {
    return Promise.resolve(this.#sessions.get(sessionId)?.variables.get(name));
  }

  protected doList(sessionId: string): Promise<VariableEntry[] | undefined> {
    const session = this.#sessions.get(sessionId);
    if (session === undefined) return Promise.resolve(undefined);
    return Promise.resolve([...session.variables].map(([name, v]) => ({ name, value: v.value, version: v.version })));
  }

  protected doExpiredSessions(now: number): Promise<string[]> {
    const ids: string[] = [];
    for (const [id, session] of this.#sessions) if (session.info.expiresAt !== undefined && session.info.expiresAt <= now) ids.push(id);
    return Promise.resolve(ids);
  }

  protected async doUnit<R>(
    sessionId: string, work: (unit: Unit) => Promise<R>, access: UnitAccess, _prefetch: string | undefined, _announcements: unknown,
    locked: () => void,
  ): Promise<R> {
    const session = this.#sessions.get(sessionId);
    if (session === undefined) throw noSession(sessionId);
    // The sweep never waits for a unit that holds the session: it is ended by a later sweep.
    if (access === 'sweeping' && session.busy) throw noSession(sessionId);
    let release!: () => void;
    const previous = session.lock;
    session.lock = new Promise<void>((resolve) => (release = resolve));
    await previous;
    session.busy = true;
    locked();
    try {
      // Checked under the lock: the session may have ended while this unit waited.
      if (this.#sessions.get(sessionId) !== session || (isExpired(session.info) && access === 'live')) throw noSession(sessionId);
      const writes = new Map<string, StoredVariable | Removed>();
      let dropped = false;
      const unit: Unit = {
        read: (name) => {
          const buffered = writes.get(name);
          return Promise.resolve(buffered instanceof Removed ? undefined : buffered ?? session.variables.get(name));
        },
        write: (name, value, version) => {
          writes.set(name, { value, version });
          return Promise.resolve();
        },
        remove: (name, version) => {
          writes.set(name, new Removed(version));
          return Promise.resolve();
        },
        tombstone: (name) => {
          const buffered = writes.get(name);
          return Promise.resolve(buffered instanceof Removed ? buffered.version : session.tombstones.get(name) ?? 0);
        },
        dropSession: () => {
          dropped = true;
          return Promise.resolve([...session.variables].map(([name, v]) => ({ name, value: v.value, version: v.version })));
        },
      };
      const result = await work(unit);
      // Commit: everything the unit did, at once.
      if (dropped) {
        this.#sessions.delete(sessionId);
      } else {
        for (const [name, write] of writes) {
          if (write instanceof Removed) {
            session.variables.delete(name);
            session.tombstones.set(name, write.version);
          } else {
            session.variables.set(name, write);
            session.tombstones.delete(name);
          }
        }
      }
      return result;
    } finally {
      session.busy = false;
      release();
    }
  }

  protected doClose(): Promise<void> {
    this.#sessions.clear();
    return Promise.resolve();
  }
}
