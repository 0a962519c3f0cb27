import type { ObserverManager } from '../hub/observer-manager.js';
import type { Change, ObserveOptions, ObserverCallback, Subscription } from '../core/types.js';
import type { JsonValue } from '../core/json.js';
import type { VariableEntry } from './store.js';

/** @internal */
export interface WatchSpec {
  readonly keyOrPattern: string;
  readonly isPattern: boolean;
  readonly sessionId: string;
  readonly callback: ObserverCallback<JsonValue | undefined>;
  readonly options: ObserveOptions;
  readonly includeCurrent: boolean;
  /** Reads the current values; called after the observer is registered. */
  readonly readCurrent: () => Promise<VariableEntry[]>;
  readonly keyOf: (name: string) => string;
}

/**
 * Registers a store watcher. With `includeCurrent`, the observer is registered
 * *before* the current values are read, and holds what arrives meanwhile;
 * then the current values and the held changes go to it through the hub's
 * `deliverTo` — through its own queue, ahead of any later change, with its
 * bound, timeout and accounting — and changes whose `meta.version` is not
 * newer than what the read saw are skipped. Registering first leaves no gap;
 * the version filter leaves no duplicate.
 */
export async function watchVariable(hub: ObserverManager, spec: WatchSpec): Promise<Subscription> {
  const { keyOrPattern, isPattern, callback, options } = spec;
  const register = (cb: ObserverCallback<JsonValue | undefined>): Subscription =>
    isPattern ? hub.observePattern(keyOrPattern, cb, options) : hub.observe(keyOrPattern, cb, options);
  if (!spec.includeCurrent) return register(callback);

  /** name → version the read saw; a name leaves it once a newer change has passed. */
  let seen: Map<string, number> | undefined = undefined; // set once the current values are read
  const held: Change<JsonValue | undefined>[] = [];
  const isStale = (change: Change<JsonValue | undefined>): boolean => {
    if (change.meta['current'] === true) return false;
    const name = change.meta['name'] as string;
    const version = seen!.get(name);
    if (version === undefined) return false;
    if ((change.meta['version'] as number) <= version) return true;
    seen!.delete(name);
    return false;
  };
  const wrapper: ObserverCallback<JsonValue | undefined> = (change) => {
    if (seen === undefined) {
      held.push(change);
      return undefined;
    }
    return isStale(change) ? undefined : callback(change);
  };
  const sub = register(wrapper);
  let current: VariableEntry[];
  try {
    current = await spec.readCurrent();
  } catch (error) {
    sub.unsubscribe();
    throw error;
  }
  seen = new Map(current.map((entry) => [entry.name, entry.version]));
  if (!sub.active || hub.closed) return sub;
  for (const entry of current) {
    hub.deliverTo(sub, {
      key: spec.keyOf(entry.name),
      oldValue: undefined,
      newValue: entry.value,
      meta: Object.freeze({ sessionId: spec.sessionId, name: entry.name, version: entry.version, current: true }),
      seq: 0,
      at: Date.now(),
    });
  }
  for (const change of held) hub.deliverTo(sub, change);
  held.length = 0;
  return sub;
}
