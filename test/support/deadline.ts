import { setImmediate as nextTask } from 'node:timers/promises';

/** Resolves with `promise`, or rejects naming `what` once `ms` have passed: no wait in a test is without end. */
export async function withDeadline<T>(promise: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Records the process's unhandled rejections while a test runs; `settle()` lets pending ones surface first. */
export function unhandledRejections(t: { after(fn: () => unknown): void }): { readonly seen: unknown[]; settle(): Promise<void> } {
  const seen: unknown[] = [];
  const listener = (reason: unknown): void => void seen.push(reason);
  process.on('unhandledRejection', listener);
  t.after(() => void process.off('unhandledRejection', listener));
  return {
    seen,
    async settle() {
      // Node reports an unhandled rejection once the microtask queue has drained: two turns of the loop are past that.
      await nextTask();
      await nextTask();
    },
  };
}
