import { ObserverManager } from '../../src/index.js';
import { hubSuite } from '../../src/testing.js';
import { lateHub } from '../support/hubs.js';

hubSuite({ name: 'ObserverManager', create: (options) => new ObserverManager(options) });

// A hub may start its deliveries later than this one does and still conform: the suite waits on
// drain(), on arrivals and on countdowns, never on a number of microtasks.
hubSuite({
  name: 'ObserverManager, every callback started 3 microtasks late',
  create: (options) => lateHub(new ObserverManager(options), 3),
  skip: [{
    test: 'notify() - a change notified from a callback is delivered after the current ones, in order',
    reason: 'the wrapper makes every callback async, and a change notified from an async callback may overtake the changes its own observer still has queued',
  }],
});
