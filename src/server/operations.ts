import type { JsonValue } from '../core/json.js';
import type { SessionStoreLike, SetResult, VariableEntry } from '../store/store.js';
import { HttpError } from './http-errors.js';

/** One operation of a transaction, checked. */
export type TransactionOp =
  | { readonly op: 'set'; readonly name: string; readonly value: unknown }
  | { readonly op: 'delete'; readonly name: string };

/** What one operation of a transaction did. */
export type TransactionOpResult =
  | { readonly op: 'set'; readonly name: string; readonly oldValue: JsonValue | undefined; readonly newValue: JsonValue; readonly version: number }
  | { readonly op: 'delete'; readonly name: string; readonly deleted: boolean };

/**
 * The store operations every transport offers, with the same rules and
 * errors whatever the wire: HTTP and gRPC answer from these.
 */

/** A variable with its version; 404 `HERALD_NO_VARIABLE` when it is unset. */
export async function getVariable(store: SessionStoreLike, session: string, name: string): Promise<VariableEntry & { readonly value: JsonValue }> {
  const entry = (await store.list(session)).find((e) => e.name === name);
  if (entry?.value === undefined) throw new HttpError(404, 'HERALD_NO_VARIABLE', `session ${JSON.stringify(session)} has no variable ${JSON.stringify(name)}`);
  return entry as VariableEntry & { readonly value: JsonValue };
}

/**
 * Sets a variable; with `expected`, only if it is at that version (0: only
 * if unset), else 412 `HERALD_VERSION_MISMATCH` and nothing is written.
 */
export async function setVariable(
  store: SessionStoreLike, session: string, name: string, value: unknown, meta: Readonly<Record<string, unknown>> | undefined, expected: number | undefined,
): Promise<SetResult> {
  return store.transaction(session, async (tx) => {
    if (expected !== undefined) {
      const current = await tx.entry(name);
      const version = current === undefined || current.value === undefined ? 0 : current.version;
      if (version !== expected) {
        throw new HttpError(412, 'HERALD_VERSION_MISMATCH', `variable ${JSON.stringify(name)} is at version ${version}, not ${expected}: nothing was written`);
      }
    }
    return tx.set(name, value, meta);
  });
}

/** Runs checked operations as one transaction: all or nothing, one `txId`. */
export async function runTransaction(store: SessionStoreLike, session: string, ops: readonly TransactionOp[]): Promise<{ txId: string; results: TransactionOpResult[] }> {
  let txId = '';
  const results = await store.transaction(session, async (tx) => {
    txId = tx.txId;
    const done: TransactionOpResult[] = [];
    for (const op of ops) {
      if (op.op === 'set') {
        const result = await tx.set(op.name, op.value);
        done.push({ op: 'set', name: op.name, oldValue: result.oldValue, newValue: result.newValue, version: result.version });
      } else {
        done.push({ op: 'delete', name: op.name, deleted: await tx.delete(op.name) });
      }
    }
    return done;
  });
  return { txId, results };
}

/** Refuses a transaction of more than `max` operations (413 `HERALD_TOO_LARGE`), or of none (400). */
export function assertOpCount(count: number, max: number): void {
  if (count === 0) throw new HttpError(400, 'HERALD_INVALID_ARGUMENT', '`ops` must hold at least one operation');
  if (count > max) throw new HttpError(413, 'HERALD_TOO_LARGE', `a transaction takes at most ${max} ops, got ${count}`);
}
