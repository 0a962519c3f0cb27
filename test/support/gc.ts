import { setImmediate as nextTask } from 'node:timers/promises';

/** The `gc` that `--expose-gc` provides, or undefined (tests that need it skip, saying why). */
export const gc: (() => void) | undefined = (globalThis as { gc?: () => void }).gc;

export const NO_GC = 'needs node --expose-gc (npm test passes it)';

/**
 * Collects garbage until `done()` holds, giving finalizers a task to run in
 * between; at most `rounds` times. Returns whether `done()` came to hold.
 */
export async function collectUntil(done: () => boolean, rounds = 50): Promise<boolean> {
  for (let i = 0; i < rounds && !done(); i++) {
    await nextTask(); // let WeakRef targets of the last job go, and finalizers run
    gc!();
    await nextTask();
  }
  return done();
}

/** Heap in use after a full collection. */
export async function settledHeap(): Promise<number> {
  for (let i = 0; i < 6; i++) {
    await nextTask();
    gc!();
  }
  return process.memoryUsage().heapUsed;
}
