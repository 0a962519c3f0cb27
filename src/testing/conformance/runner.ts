import { AssertionError } from 'node:assert';
import { createRequire } from 'node:module';
import { TimeoutError } from '../../index.js';

/**
 * The parts of a test runner that the conformance suites use: node:test's,
 * vitest's, or any runner with a `describe` and a `test` that take a name and
 * a function. The suites' test functions take no argument and use nothing of
 * the runner's own (no `t.after`, no `t.mock`): each test cleans up after
 * itself and bounds its own waits.
 *
 * @example
 * ```ts
 * // a vitest file
 * import { afterAll, describe, test } from 'vitest';
 * import { ObserverManager } from 'herald';
 * import { hubSuite } from 'herald/testing';
 * hubSuite({ name: 'ObserverManager', create: (o) => new ObserverManager(o), runner: { describe, test, after: afterAll } });
 * ```
 */
export interface SuiteRunner {
  /** Groups tests: node:test's, vitest's, mocha's or jest's `describe`. */
  readonly describe: (name: string, fn: () => void) => unknown;
  /** Registers one test. */
  readonly test: (name: string, fn: () => Promise<void>) => unknown;
  /**
   * Registers a test that is skipped for `reason`. When omitted, the runner's
   * `test.skip` is used if it has one, with the reason in the test's name;
   * otherwise the test is left out.
   */
  readonly skip?: (name: string, reason: string) => unknown;
  /**
   * Runs `fn` once after the tests of the `describe` it is called in:
   * node:test's `after`, vitest's or jest's `afterAll`. Only
   * {@link backplaneSuite} needs it (to end its node processes).
   */
  readonly after?: (fn: () => Promise<void>) => unknown;
}

let nodeRunner: SuiteRunner | undefined;

/**
 * node:test as a {@link SuiteRunner}: the suites' default. It is loaded only
 * when a suite runs without a `runner`, so importing `herald/testing` from
 * another runner's file never loads node:test.
 */
export function nodeTestRunner(): SuiteRunner {
  if (nodeRunner !== undefined) return nodeRunner;
  const nodeTest = createRequire(import.meta.url)('node:test') as typeof import('node:test');
  nodeRunner = {
    describe: (name, fn) => nodeTest.describe(name, fn),
    test: (name, fn) => nodeTest.test(name, fn),
    skip: (name, reason) => nodeTest.test(name, { skip: reason }, () => {}),
    after: (fn) => nodeTest.after(fn),
  };
  return nodeRunner;
}

/** Registers `name` as skipped for `reason` with whatever `runner` offers. @internal */
export function registerSkipped(runner: SuiteRunner, name: string, reason: string): void {
  if (runner.skip !== undefined) {
    runner.skip(name, reason);
    return;
  }
  const skip = (runner.test as { skip?: unknown }).skip;
  if (typeof skip === 'function') (skip as (name: string, fn: () => void) => unknown).call(runner.test, `${name} [skipped: ${reason}]`, () => {});
}

// Taken when this module loads, so that fake timers a test installs later cannot stop a deadline.
const realSetTimeout = globalThis.setTimeout;
const realClearTimeout = globalThis.clearTimeout;

/**
 * `promise`, or a rejection with `HERALD_TIMEOUT` saying what was waited for
 * when it has not settled within `timeoutMs`. @internal
 */
export function within<T>(promise: PromiseLike<T>, timeoutMs: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = realSetTimeout(() => reject(new TimeoutError(`waited ${timeoutMs} ms for ${what}, in vain`)), timeoutMs);
    Promise.resolve(promise).finally(() => realClearTimeout(timer)).then(resolve, reject);
  });
}

/**
 * A countdown that observers tick: `wait()` resolves once it has been ticked
 * `count` times, and rejects with `HERALD_TIMEOUT` naming `what` when that
 * takes longer than `timeoutMs` from the call of `wait()`. @internal
 */
export function countdown(count: number, what: string, timeoutMs = 5000): { tick(): void; wait(): Promise<void> } {
  let left = count;
  let done!: () => void;
  const reached = new Promise<void>((resolve) => (done = resolve));
  if (left <= 0) done();
  return {
    tick() {
      if (--left === 0) done();
    },
    wait: () => within(reached, timeoutMs, `${what} (${count - Math.max(left, 0)} of ${count} so far)`),
  };
}

/** One macrotask turn: what a hub that hands work on late has had, in any runner. @internal */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => realSetTimeout(resolve, 0));
}

/** How long cleaning up after a test (closing its hubs and stores) may take. */
const CLEANUP_MS = 10_000;

/**
 * One test's cleanups and the errors that reached an `onError` it did not
 * expect. {@link CaseRun.run} runs the body under a deadline, then the
 * cleanups (each under a deadline), and fails when the body failed, a
 * cleanup failed, or any error reached {@link CaseRun.recordError}. @internal
 */
export class CaseRun {
  readonly #cleanups: (() => unknown)[] = [];
  readonly #unexpected: { error: unknown; context: unknown }[] = [];

  /** Runs `fn` after the test, whatever its outcome; the last added runs first. */
  onCleanup(fn: () => unknown): void {
    this.#cleanups.push(fn);
  }

  /** An `onError` for hubs whose tests expect no error: the test fails if anything reaches it. */
  readonly recordError = (error: unknown, context?: unknown): void => {
    this.#unexpected.push({ error, context });
  };

  async run(name: string, timeoutMs: number, body: () => unknown): Promise<void> {
    let failure: { error: unknown } | undefined;
    try {
      await within(Promise.resolve().then(body), timeoutMs, `the test "${name}" to finish`);
    } catch (error) {
      failure = { error };
    }
    for (const cleanup of this.#cleanups.reverse()) {
      try {
        await within(Promise.resolve().then(cleanup), CLEANUP_MS, `the cleanup of "${name}"`);
      } catch (error) {
        failure ??= { error };
      }
    }
    if (this.#unexpected.length > 0) throw unexpectedErrors(this.#unexpected, failure?.error);
    if (failure !== undefined) throw failure.error;
  }
}

function unexpectedErrors(errors: readonly { error: unknown; context: unknown }[], alsoFailed: unknown): AssertionError {
  const [first] = errors;
  const describe = (error: unknown): string => (error instanceof Error ? `${error.name}: ${error.message}` : String(error));
  const where = (first!.context as { observerId?: string; key?: string } | undefined) ?? {};
  const lines = [
    `${errors.length} error(s) reached the hub's onError, none expected; the first, from observer ${where.observerId ?? '?'} of ${JSON.stringify(where.key)}:`,
    `  ${describe(first!.error)}`,
  ];
  if (alsoFailed !== undefined) lines.push(`The test failed as well: ${describe(alsoFailed)}`);
  const error = new AssertionError({ message: lines.join('\n'), actual: errors.map((e) => e.error), expected: [], operator: 'onError' });
  (error as { cause?: unknown }).cause = first!.error;
  return error;
}
