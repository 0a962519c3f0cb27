import type { ChildProcess } from 'node:child_process';

/**
 * `promise`, or a rejection saying what was waited for when it has not
 * settled within `timeoutMs`: no test waits on an event without a deadline.
 */
export function within<T>(promise: PromiseLike<T>, timeoutMs: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`waited ${timeoutMs} ms for ${what}, in vain`)), timeoutMs);
    Promise.resolve(promise).finally(() => clearTimeout(timer)).then(resolve, reject);
  });
}

/**
 * The exit code of `child` (or the signal that ended it). A child still
 * running after `timeoutMs` is killed, and the code is `"still running"`.
 */
export function exitOf(child: ChildProcess, timeoutMs: number): Promise<number | string> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve('still running');
    }, timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? signal ?? 'unknown');
    });
  });
}

/**
 * A countdown that callbacks tick: `wait()` resolves once it has been ticked
 * `count` times, and rejects, naming `what`, when that takes longer than
 * `timeoutMs` from the call of `wait()`.
 */
export function countdown(count: number, what: string, timeoutMs = 5000): { tick(): void; wait(): Promise<void> } {
  let left = count;
  let done!: () => void;
  const reached = new Promise<void>((resolve) => (done = resolve));
  return {
    tick() {
      if (--left === 0) done();
    },
    wait: () => within(reached, timeoutMs, what),
  };
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
      await new Promise<void>((resolve) => setImmediate(resolve));
      await new Promise<void>((resolve) => setImmediate(resolve));
    },
  };
}
