import type { LatencyStats } from '../core/types.js';

/**
 * A ring of the most recent latency samples. `notify` samples one change in
 * every `SAMPLE_EVERY`, so the hot path pays for a clock read only rarely.
 */
export class LatencyRecorder {
  static readonly SAMPLE_EVERY = 16;
  readonly #ring = new Float64Array(1024);
  #count = 0;

  record(ms: number): void {
    this.#ring[this.#count++ % this.#ring.length] = ms;
  }

  snapshot(): LatencyStats {
    const n = Math.min(this.#count, this.#ring.length);
    if (n === 0) return { samples: 0, p50Ms: 0, p90Ms: 0, p99Ms: 0, maxMs: 0 };
    const sorted = this.#ring.slice(0, n).sort();
    const at = (q: number): number => sorted[Math.min(n - 1, Math.floor(q * n))]!;
    return { samples: n, p50Ms: at(0.5), p90Ms: at(0.9), p99Ms: at(0.99), maxMs: sorted[n - 1]! };
  }
}
