/** The `then` of a thenable, as herald calls it. */
export type Then = (this: unknown, onFulfilled?: (value: unknown) => void, onRejected?: (error: unknown) => void) => unknown;

/**
 * Calls a user's hook (`onClose`, `onGap`, `onError`) so that nothing it
 * does escapes: a throw is caught, and a returned promise that rejects is
 * handled. Returns false when it failed synchronously.
 */
export function callContained<A extends unknown[]>(hook: (...args: A) => unknown, ...args: A): boolean {
  try {
    const result = hook(...args);
    if ((typeof result === 'object' || typeof result === 'function') && result !== null) {
      const then = (result as { then?: unknown }).then;
      if (typeof then === 'function') (then as Then).call(result, undefined, ignore);
    }
    return true;
  } catch {
    return false;
  }
}

function ignore(): void {}
