import { ObserverManager } from '../../../src/index.js';
import { NatsBackplane } from '../../../src/nats.js';
import { serveClusterNode } from '../../../src/testing.js';
import { urls } from '../../support/engines.js';

serveClusterNode(() => new ObserverManager({
  sweepIntervalMs: 0,
  backplane: new NatsBackplane({ servers: urls.nats, prefix: process.env['HERALD_TEST_NAMESPACE']! }),
}));
