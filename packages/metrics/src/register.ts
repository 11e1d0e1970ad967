import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { MetricSpec } from './catalog';

type LabelsOf<S extends MetricSpec> = S['labelNames'][number];

/** The prom-client object a spec becomes, typed by its label names. */
export type MetricHandle<S extends MetricSpec> = S['type'] extends 'counter'
  ? Counter<LabelsOf<S>>
  : S['type'] extends 'gauge'
    ? Gauge<LabelsOf<S>>
    : Histogram<LabelsOf<S>>;

export type MetricHandles<T extends Readonly<Record<string, MetricSpec>>> = { readonly [K in keyof T]: MetricHandle<T[K]> };

/** Per metric, a function that refreshes it just before each scrape reads it. */
export type Collectors<T extends Readonly<Record<string, MetricSpec>>> = { readonly [K in keyof T]?: (handle: MetricHandle<T[K]>) => void };

/** Registers every spec on `registry`; throws if a name is already registered there. */
export function registerMetrics<T extends Readonly<Record<string, MetricSpec>>>(
  registry: Registry,
  specs: T,
  collectors: Collectors<T> = {},
): MetricHandles<T> {
  const out: Record<string, Counter | Gauge | Histogram> = {};
  const hooks = collectors as Readonly<Record<string, ((handle: Counter | Gauge | Histogram) => void) | undefined>>;
  for (const [key, s] of Object.entries(specs)) {
    const hook = hooks[key];
    const collect = hook === undefined ? undefined : (): void => hook(out[key]!);
    const base = { name: s.name, help: s.help, labelNames: [...s.labelNames], registers: [registry], collect };
    switch (s.type) {
      case 'counter':
        out[key] = new Counter(base);
        break;
      case 'gauge':
        out[key] = new Gauge(base);
        break;
      case 'histogram':
        out[key] = new Histogram({ ...base, buckets: [...(s.buckets ?? [])] });
        break;
    }
  }
  // The mapped type is exactly what the loop built, key by key; TypeScript cannot follow Object.entries.
  return out as unknown as MetricHandles<T>;
}

/**
 * Makes a counter report a cumulative total read at scrape time (from a stats snapshot that only grows while
 * the process lives) instead of being incremented on the hot path.
 */
export function setCounter<L extends string>(counter: Counter<L>, values: Iterable<readonly [Partial<Record<L, string>>, number]>): void {
  counter.reset();
  for (const [labels, v] of values) counter.inc(labels, Math.max(0, v));
}
