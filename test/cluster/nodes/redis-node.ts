import { ObserverManager } from '../../../src/index.js';
import { RedisBackplane } from '../../../src/redis.js';
import { serveClusterNode } from '../../../src/testing.js';
import { urls } from '../../support/engines.js';

serveClusterNode(() => new ObserverManager({
  sweepIntervalMs: 0,
  backplane: new RedisBackplane({ url: urls.redis, prefix: `${process.env['HERALD_TEST_NAMESPACE']}:`, maxMessageBytes: Number(process.env['HERALD_TEST_MAX_BYTES']) }),
}));
