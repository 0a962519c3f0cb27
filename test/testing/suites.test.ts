import assert from 'node:assert/strict';
import { AssertionError } from 'node:assert';
import { test } from 'node:test';
import { ObserverManager, type ObserveOptions } from '../../src/index.js';
import { hubSuite, type ConformingHub, type HubSuiteOptions } from '../../src/testing.js';
import { throwingHub, wrapHub } from '../support/hubs.js';

/** The hub suite's tests by name, registered with a runner that only collects them, for this file to run one by one. */
function suiteTests(create: HubSuiteOptions['create'], options: Partial<HubSuiteOptions> = {}): Map<string, () => Promise<void>> {
  const tests = new Map<string, () => Promise<void>>();
  hubSuite({ name: 'collected', create, runner: { describe: (_name, fn) => fn(), test: (name, fn) => void tests.set(name, fn) }, ...options });
  return tests;
}

const SEQ_TEST = 'notify() - seq is one counter for the whole hub and never goes backwards';
const DEAD_TEST = 'observe() - isAlive false removes the observer before a delivery, with reason "dead"';

test('hubSuite() - registers every test with the runner it is given, and they pass on a conforming hub', async () => {
  const tests = suiteTests((options) => new ObserverManager(options));
  assert.ok(tests.size > 50, `${tests.size} tests`);
  await tests.get(SEQ_TEST)!();
  await tests.get(DEAD_TEST)!();
});

test('hubSuite() - an error that reaches onError and nothing else fails the test', async () => {
  const injected = new Error('thrown after the callback ran');
  const run = suiteTests((options) => throwingHub(new ObserverManager(options), injected)).get(SEQ_TEST)!;
  await assert.rejects(run(), (error: unknown) => {
    assert.ok(error instanceof AssertionError);
    assert.match(error.message, /3 error\(s\) reached the hub's onError, none expected/);
    assert.match(error.message, /thrown after the callback ran/);
    assert.doesNotMatch(error.message, /failed as well/, 'every other assertion of the test held');
    assert.equal(error.cause, injected);
    return true;
  });
});

test('hubSuite() - an assertion failing inside an observer callback fails the test, with its message', async () => {
  // A hub that forgets isAlive: the dead observer's callback runs, and its assert.fail goes to onError.
  const forgetful = (options: ConstructorParameters<typeof ObserverManager>[0]): ConformingHub => {
    const hub = new ObserverManager(options);
    const observe = ((key: string, callback: () => void, opts: ObserveOptions = {}) => {
      const { isAlive, ...rest } = opts;
      void isAlive; // forgotten
      return hub.observe(key, callback, rest);
    }) as ConformingHub['observe'];
    return wrapHub(hub, { observe });
  };
  const run = suiteTests(forgetful).get(DEAD_TEST)!;
  await assert.rejects(run(), (error: unknown) => {
    assert.ok(error instanceof AssertionError);
    assert.match(error.message, /reached the hub's onError[^]*delivered to a dead observer/);
    return true;
  });
});

test('hubSuite() - a test whose wait never ends fails at its deadline instead of hanging', async () => {
  // A hub whose drain() never resolves while it is open.
  const stuck = (options: ConstructorParameters<typeof ObserverManager>[0]): ConformingHub => {
    const hub = new ObserverManager(options);
    let release!: () => void;
    const closed = new Promise<void>((resolve) => (release = resolve));
    return wrapHub(hub, { drain: () => closed, close: () => (release(), hub.close()) });
  };
  const run = suiteTests(stuck, { timeoutMs: 200 }).get(SEQ_TEST)!;
  await assert.rejects(run(), { code: 'HERALD_TIMEOUT', message: `waited 200 ms for the test "${SEQ_TEST}" to finish, in vain` });
});

test('hubSuite() - a skipped test goes to the runner\'s skip with its reason, or to test.skip with the reason in its name', () => {
  const skipped: string[] = [];
  const describe = (_name: string, fn: () => void): void => fn();
  const noop = (): void => {};
  hubSuite({
    name: 'skips', create: (options) => new ObserverManager(options), skip: [{ test: SEQ_TEST, reason: 'not mine' }],
    runner: { describe, test: noop, skip: (name, reason) => void skipped.push(`${name}: ${reason}`) },
  });
  const viaTestSkip = Object.assign(noop, { skip: (name: string) => void skipped.push(name) });
  hubSuite({ name: 'skips', create: (options) => new ObserverManager(options), skip: [{ test: SEQ_TEST, reason: 'not mine' }], runner: { describe, test: viaTestSkip } });
  assert.deepEqual(skipped, [`${SEQ_TEST}: not mine`, `${SEQ_TEST} [skipped: not mine]`]);
});
