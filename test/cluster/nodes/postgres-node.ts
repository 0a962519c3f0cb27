import { ObserverManager } from '../../../src/index.js';
import { PostgresBackplane } from '../../../src/postgres.js';
import { serveClusterNode } from '../../../src/testing.js';
import { urls } from '../../support/engines.js';

serveClusterNode(() => new ObserverManager({
  sweepIntervalMs: 0,
  backplane: new PostgresBackplane({
    connectionString: urls.postgres, schema: process.env['HERALD_TEST_NAMESPACE']!, maxMessageBytes: Number(process.env['HERALD_TEST_MAX_BYTES']),
  }),
}));
