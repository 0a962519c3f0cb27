import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MeterProvider, MetricReader, type DataPoint } from '@opentelemetry/sdk-metrics';
import { ObserverManager } from '../../src/index.js';
import { createOtelBridge } from '../../src/otel.js';

/** A reader that collects on demand. */
class TestReader extends MetricReader {
  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

async function readMetrics(reader: MetricReader): Promise<Map<string, DataPoint<unknown>[]>> {
  const { resourceMetrics, errors } = await reader.collect();
  assert.deepEqual(errors, []);
  const out = new Map<string, DataPoint<unknown>[]>();
  for (const scope of resourceMetrics.scopeMetrics) {
    for (const metric of scope.metrics) out.set(metric.descriptor.name, metric.dataPoints);
  }
  return out;
}

test('createOtelBridge() - publishes the hub\'s counters, levels and latency through a Meter', async (t) => {
  const reader = new TestReader();
  const provider = new MeterProvider({ readers: [reader] });
  t.after(() => provider.shutdown());
  const hub = new ObserverManager({ sweepIntervalMs: 0 });
  t.after(() => hub.close());
  using bridge = createOtelBridge(hub, { meter: provider.getMeter('test'), attributes: { hub: 'sessions' } });
  hub.observe('o/k', () => {});
  for (let i = 0; i < 40; i++) hub.notify('o/k', i, i + 1);
  await hub.drain();
  const metrics = await readMetrics(reader);
  const value = (name: string): unknown => metrics.get(name)?.[0]?.value;
  assert.equal(value('herald.notifications'), 40);
  assert.equal(value('herald.deliveries'), 40);
  assert.equal(value('herald.observers.active'), 1);
  assert.equal(value('herald.keys'), 1);
  assert.deepEqual(metrics.get('herald.notifications')?.[0]?.attributes, { hub: 'sessions' });
  const quantiles = (metrics.get('herald.dispatch.latency') ?? []).map((p) => p.attributes['quantile']).sort();
  assert.deepEqual(quantiles, ['max', 'p50', 'p90', 'p99']);
  bridge.close();
  for (let i = 0; i < 10; i++) hub.notify('o/k', i, i + 1);
  const after = await readMetrics(reader);
  // Cumulative points keep their last value; a closed bridge no longer reads the hub, so the 10 later changes are not in it.
  assert.equal(after.get('herald.notifications')?.[0]?.value, 40);
  assert.equal(hub.getStats().notifications, 50);
});

test('createOtelBridge() - refuses a missing meter or a bad prefix', () => {
  const hub = new ObserverManager({ sweepIntervalMs: 0 });
  assert.throws(() => createOtelBridge(hub, {} as never), { code: 'HERALD_INVALID_OPTION', message: /`options.meter`/ });
  const meter = new MeterProvider().getMeter('x');
  assert.throws(() => createOtelBridge(hub, { meter, prefix: '9 bad' }), { code: 'HERALD_INVALID_OPTION', message: /`options.prefix`/ });
  assert.throws(() => createOtelBridge({} as never, { meter }), { code: 'HERALD_INVALID_ARGUMENT', message: /`hub`/ });
  void hub.close();
});
