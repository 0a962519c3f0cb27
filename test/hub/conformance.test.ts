import { ObserverManager } from '../../src/index.js';
import { hubSuite } from '../../src/testing.js';

hubSuite({ name: 'ObserverManager', create: (options) => new ObserverManager(options) });
