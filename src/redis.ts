/**
 * herald/redis: a backplane on Redis pub/sub, through `ioredis` (an optional
 * peer dependency).
 *
 * @example
 * ```ts
 * import { ObserverManager } from 'herald';
 * import { RedisBackplane } from 'herald/redis';
 * const hub = new ObserverManager({ backplane: new RedisBackplane({ url: process.env.REDIS_URL }) });
 * ```
 * @module
 */
export { RedisBackplane, type RedisBackplaneOptions } from './cluster/redis.js';
