/**
 * herald/otel: a hub's statistics as OpenTelemetry metrics, through
 * `@opentelemetry/api` alone (an optional peer dependency; only its types are used).
 *
 * @example
 * ```ts
 * import { metrics } from '@opentelemetry/api';
 * import { createOtelBridge } from 'herald/otel';
 * const bridge = createOtelBridge(hub, { meter: metrics.getMeter('sessions') });
 * ```
 * @module
 */
export { createOtelBridge, type OtelBridge, type OtelBridgeOptions } from './stats/otel-bridge.js';
