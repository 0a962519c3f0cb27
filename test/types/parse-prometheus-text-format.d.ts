/** The shape `parse-prometheus-text-format` returns (the package ships no types). */
declare module 'parse-prometheus-text-format' {
  interface PrometheusMetric {
    readonly value?: string;
    readonly labels?: Readonly<Record<string, string>>;
  }
  interface PrometheusFamily {
    readonly name: string;
    readonly help: string;
    readonly type: 'COUNTER' | 'GAUGE' | 'SUMMARY' | 'HISTOGRAM' | 'UNTYPED';
    readonly metrics: readonly PrometheusMetric[];
  }
  export default function parse(text: string): PrometheusFamily[];
}
