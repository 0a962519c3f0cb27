/**
 * herald/nats: a backplane on NATS core pub/sub, through
 * `@nats-io/transport-node` (an optional peer dependency).
 *
 * @example
 * ```ts
 * import { ObserverManager } from 'herald';
 * import { NatsBackplane } from 'herald/nats';
 * const hub = new ObserverManager({ backplane: new NatsBackplane({ servers: process.env.NATS_URL }) });
 * ```
 * @module
 */
export { NatsBackplane, type NatsBackplaneOptions } from './cluster/nats.js';
