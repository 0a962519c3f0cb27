import assert from 'node:assert/strict';
import { afterAll, describe, test } from 'vitest';
import { ObserverManager, SessionStore } from '../../src/index.js';
import { hubSuite, storeSuite } from '../../src/testing.js';

// Read before the suites register anything: importing herald/testing must not have loaded node:test.
const loadedNodeTest = (process as unknown as { moduleLoadList: string[] }).moduleLoadList.filter((name) => name.includes('test_runner'));

test('herald/testing - importing it loads no node:test', () => {
  assert.deepEqual(loadedNodeTest, []);
});

const runner = { describe, test, after: afterAll };
hubSuite({ name: 'ObserverManager under vitest', create: (options) => new ObserverManager(options), runner });
storeSuite({ name: 'SessionStore (memory) under vitest', create: (options) => new SessionStore(options), runner });
