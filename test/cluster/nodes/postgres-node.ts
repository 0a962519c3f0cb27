import { ObserverManager } from '../../../src/index.js';
import { PostgresBackplane, PostgresSessionStore } from '../../../src/postgres.js';
import { serveClusterNode } from '../../../src/testing.js';
import { urls } from '../../support/engines.js';

const schema = process.env['HERALD_TEST_NAMESPACE']!;

// The store writes through the outbox of the node's backplane: a change and its announcement commit together.
serveClusterNode(() => new ObserverManager({
  sweepIntervalMs: 0,
  backplane: new PostgresBackplane({ connectionString: urls.postgres, schema, maxMessageBytes: Number(process.env['HERALD_TEST_MAX_BYTES']) }),
}), { makeStore: (hub) => new PostgresSessionStore({ hub, connectionString: urls.postgres, schema, expiryCheckMs: 0 }) });
