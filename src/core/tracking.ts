import type { ObserveOptions, Subscription } from './types.js';

/**
 * Keeps `set` holding exactly the living observers registered through it: the
 * returned options wrap `onClose` (the caller's still runs) so that an observer
 * leaves the set when it goes, whatever removed it; `track` adds the handle once
 * registered, unless it is already gone (an aborted signal closes it during
 * registration, before the handle exists). `onEmptied` runs when the set empties.
 * @internal
 */
export function tracking(
  set: Set<Subscription>, options: ObserveOptions | undefined, onEmptied?: () => void,
): { readonly options: ObserveOptions; track<S extends Subscription>(sub: S): S } {
  const userOnClose = options?.onClose;
  let registered: Subscription | undefined;
  return {
    options: {
      ...options,
      onClose: (reason) => {
        if (registered !== undefined && set.delete(registered) && set.size === 0) onEmptied?.();
        // Returned, so that the hub contains whatever the caller's own onClose throws or rejects with.
        return userOnClose?.(reason);
      },
    },
    track(sub) {
      registered = sub;
      if (sub.active) set.add(sub);
      return sub;
    },
  };
}
