/**
 * herald/testing: helpers that prove presence and absence of changes without
 * sleeping, and conformance suites for hubs, stores and backplanes, for
 * node:test (the default) or any runner whose `describe` and `test` they are
 * given. node:test is loaded only when a suite runs without a runner.
 *
 * @example
 * ```ts
 * import { nextChange, expectNoChange, hubSuite } from 'herald/testing';
 * const next = nextChange(hub, 'session/42/mode');
 * hub.notify('session/42/mode', 'on', 'eco');
 * await next;
 *
 * // a conformance suite in a vitest file
 * import { describe, test } from 'vitest';
 * hubSuite({ name: 'mine', create: (options) => new ObserverManager(options), runner: { describe, test } });
 * ```
 * @module
 */
export { nextChange, type NextChangeOptions } from './testing/next-change.js';
export { collect, type Collector } from './testing/collect.js';
export { expectNoChange } from './testing/expect-no-change.js';
export { hubSuite, type ConformingHub, type HubSuiteOptions } from './testing/conformance/hub.suite.js';
export { storeSuite, type StoreSuiteOptions } from './testing/conformance/store.suite.js';
export type { HubLike } from './testing/hub-like.js';
export { backplaneSuite, type BackplaneSuiteOptions } from './testing/conformance/backplane.suite.js';
export { serveClusterNode } from './testing/cluster-node.js';
export type { SuiteRunner } from './testing/conformance/runner.js';
