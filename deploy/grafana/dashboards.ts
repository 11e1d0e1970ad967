// The Grafana dashboards, as code. The JSON beside this file and in helm/pdserve/dashboards/ is generated:
//   node --import tsx deploy/grafana/dashboards.ts
// test/deploy/ checks that the committed JSON equals this output, and that every query names only metrics of
// @pdserve/metrics' METRIC_CATALOG or the recording rules in deploy/prometheus/rules/.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { METRIC_CATALOG } from '@pdserve/metrics';

export interface Target {
  readonly expr: string;
  readonly legend: string;
}

interface PanelSpec {
  readonly title: string;
  readonly description?: string;
  readonly kind: 'timeseries' | 'stat';
  readonly unit: string;
  readonly targets: readonly Target[];
  /** Grid units (24 across); default 12 for graphs and 4 for stats. */
  readonly w?: number;
  readonly h?: number;
  /** Stack series (e.g. parts of a whole). */
  readonly stack?: boolean;
  readonly max?: number;
  readonly thresholds?: readonly { readonly value: number; readonly color: string }[];
}

interface RowSpec {
  readonly row: string;
  readonly panels: readonly PanelSpec[];
}

interface DashboardSpec {
  readonly uid: string;
  readonly title: string;
  readonly description: string;
  /** Adds a `job` variable (multi-select) that panels filter by with $job. */
  readonly jobVariable?: boolean;
  readonly rows: readonly RowSpec[];
}

type Json = null | boolean | number | string | readonly Json[] | { readonly [k: string]: Json };

const DS = { type: 'prometheus', uid: '${datasource}' } as const;
const RATE = '$__rate_interval';
/** Every selector carries the namespace filter; its "All" value `.*` also matches series without the label. */
const NS = 'namespace=~"$namespace"';
/** Metrics with a `model` label (the served model) also carry the model filter. */
const MODEL = 'model=~"$model"';
const MODEL_LABELLED: ReadonlySet<string> = new Set(METRIC_CATALOG.filter((m) => m.labelNames.includes('model')).map((m) => m.name));

/** `metric{namespace=~"$namespace"[, model=~"$model"][, extra]}` (a histogram's _bucket/_sum/_count too). */
const series = (metric: string, extra = ''): string => {
  const filters = [NS, ...(MODEL_LABELLED.has(metric.replace(/_(bucket|sum|count)$/, '')) ? [MODEL] : []), ...(extra === '' ? [] : [extra])];
  return `${metric}{${filters.join(', ')}}`;
};
const rate = (metric: string, extra = ''): string => `rate(${series(metric, extra)}[${RATE}])`;
const quantile = (q: number, metric: string, by: string, extra = ''): string =>
  `histogram_quantile(${q}, sum by (${by === '' ? 'le' : `le, ${by}`}) (${rate(`${metric}_bucket`, extra)}))`;

const t = (expr: string, legend: string): Target => ({ expr, legend });
const graph = (title: string, unit: string, targets: readonly Target[], more: Partial<PanelSpec> = {}): PanelSpec => ({
  title, kind: 'timeseries', unit, targets, ...more,
});
const stat = (title: string, unit: string, targets: readonly Target[], more: Partial<PanelSpec> = {}): PanelSpec => ({
  title, kind: 'stat', unit, targets, ...more,
});

const WORKERS = 'job=~"pdserve-(prefill|decode)"';

const overview: DashboardSpec = {
  uid: 'pdserve-overview',
  title: 'pdserve / Cluster overview',
  description: 'Traffic, errors, latency, throughput and queues of a pdserve cluster.',
  rows: [
    {
      row: 'Now',
      panels: [
        stat('Requests / s', 'reqps', [t(`sum(${rate('pdserve_requests_total')})`, 'requests')]),
        // With traffic and no failure the ratio is 0, not "No data" (5xx series exist only after the first one).
        stat('5xx ratio', 'percentunit', [
          t(`(sum(${rate('pdserve_requests_total', 'status=~"5.."')}) or vector(0)) / (sum(${rate('pdserve_requests_total')}) > 0)`, '5xx'),
        ], { thresholds: [{ value: 0.01, color: 'orange' }, { value: 0.05, color: 'red' }] }),
        stat('TTFT p99', 's', [t(quantile(0.99, 'pdserve_time_to_first_token_seconds', ''), 'p99')], {
          thresholds: [{ value: 2, color: 'orange' }, { value: 5, color: 'red' }],
        }),
        stat('Generated tokens / s', 'short', [t(`sum(${rate('pdserve_generation_tokens_total')})`, 'tokens/s')]),
        stat('In flight', 'short', [t(`sum(${series('pdserve_requests_in_flight')})`, 'in flight')]),
        stat('Targets up', 'short', [t(`sum by (job) (${series('up', 'job=~"pdserve-.+"')})`, '{{job}}')], {
          description: 'Scrapeable targets per service.',
        }),
      ],
    },
    {
      row: 'Traffic and errors',
      panels: [
        graph('Requests / s by route and status', 'reqps', [
          t(`sum by (route, status) (${rate('pdserve_requests_total')})`, '{{route}} {{status}}'),
        ]),
        graph('Errors / s by status', 'reqps', [
          t(`sum by (status) (${rate('pdserve_requests_total', 'status=~"[45].."')})`, '{{status}}'),
        ], { description: '429 is admission control (queue full); 5xx are failures.' }),
      ],
    },
    {
      row: 'Latency',
      panels: [
        graph('Time to first token', 's', [
          t(quantile(0.5, 'pdserve_time_to_first_token_seconds', ''), 'p50'),
          t(quantile(0.9, 'pdserve_time_to_first_token_seconds', ''), 'p90'),
          t(quantile(0.99, 'pdserve_time_to_first_token_seconds', ''), 'p99'),
        ], { w: 8 }),
        graph('Inter-token latency', 's', [
          t(quantile(0.5, 'pdserve_inter_token_latency_seconds', ''), 'p50'),
          t(quantile(0.9, 'pdserve_inter_token_latency_seconds', ''), 'p90'),
          t(quantile(0.99, 'pdserve_inter_token_latency_seconds', ''), 'p99'),
        ], { w: 8 }),
        graph('Request duration by route', 's', [
          t(quantile(0.5, 'pdserve_request_duration_seconds', 'route'), 'p50 {{route}}'),
          t(quantile(0.99, 'pdserve_request_duration_seconds', 'route'), 'p99 {{route}}'),
        ], { w: 8 }),
        graph('Queue time by pool', 's', [
          t(quantile(0.5, 'pdserve_request_queue_time_seconds', 'job'), 'p50 {{job}}'),
          t(quantile(0.99, 'pdserve_request_queue_time_seconds', 'job'), 'p99 {{job}}'),
        ], { w: 8, description: "Time a request waited in an engine's queue before its first step: the part of TTFT that more workers remove." }),
        graph('Prompt tokens per request', 'short', [
          t(quantile(0.5, 'pdserve_request_prompt_tokens', ''), 'p50'),
          t(quantile(0.9, 'pdserve_request_prompt_tokens', ''), 'p90'),
          t(quantile(0.99, 'pdserve_request_prompt_tokens', ''), 'p99'),
        ], { w: 8, description: 'Input length of finished requests (after the chat template).' }),
        graph('Generated tokens per request', 'short', [
          t(quantile(0.5, 'pdserve_request_generation_tokens', ''), 'p50'),
          t(quantile(0.9, 'pdserve_request_generation_tokens', ''), 'p90'),
          t(quantile(0.99, 'pdserve_request_generation_tokens', ''), 'p99'),
        ], { w: 8, description: 'Output length of finished requests.' }),
      ],
    },
    {
      row: 'Admission and migration',
      panels: [
        graph('Admission by class', 'reqps', [
          t(`sum by (class, decision) (${rate('pdserve_admission_decisions_total')})`, '{{class}} {{decision}}'),
        ], { w: 8, description: 'Requests admitted, or refused with 429 and Retry-After because their predicted TTFT (or ITL) missed the SLO of their service class (--ttft-slo-ms, --itl-slo-ms).' }),
        graph('TTFT predicted vs actual by class', 's', [
          t(quantile(0.5, 'pdserve_admission_predicted_ttft_seconds', 'class'), 'p50 predicted {{class}}'),
          t(quantile(0.5, 'pdserve_admission_actual_ttft_seconds', 'class'), 'p50 actual {{class}}'),
          t(quantile(0.99, 'pdserve_admission_predicted_ttft_seconds', 'class'), 'p99 predicted {{class}}'),
          t(quantile(0.99, 'pdserve_admission_actual_ttft_seconds', 'class'), 'p99 actual {{class}}'),
        ], { w: 8, description: "The admission's prediction against what the client saw: far apart means the cost model (--cost-model) needs calibrating." }),
        graph('Migrations / s', 'ops', [
          t(`sum by (outcome) (${rate('pdserve_migrations_total')})`, '{{outcome}}'),
          t(quantile(0.99, 'pdserve_migration_seconds', ''), 'p99 added latency (s)'),
        ], { w: 8, description: 'Streams resumed on another decode worker after theirs broke mid-generation (resumed), or given up past --migration-limit (exhausted: the client got an error event).' }),
      ],
    },
    {
      row: 'Throughput and queues',
      panels: [
        graph('Tokens / s', 'short', [
          t(`sum(${rate('pdserve_prompt_tokens_total')})`, 'prompt'),
          t(`sum(${rate('pdserve_generation_tokens_total')})`, 'generated'),
        ], { w: 8 }),
        graph('Sequences by pool', 'short', [
          t(`sum by (job) (${series('pdserve_engine_running_sequences')})`, 'running {{job}}'),
          t(`sum by (job) (${series('pdserve_engine_waiting_sequences')})`, 'waiting {{job}}'),
          t(`sum(${series('pdserve_requests_in_flight')})`, 'in flight (gateway)'),
        ], { w: 8 }),
        graph('Preemptions / s', 'ops', [t(`sum by (job) (${rate('pdserve_preemptions_total')})`, '{{job}}')], {
          w: 8,
          description: 'Sequences preempted because KV blocks ran out: a sign the KV pool is too small for the load.',
        }),
        graph('Engine step duration by phase', 's', [
          t(quantile(0.5, 'pdserve_engine_step_seconds', 'job, phase'), 'p50 {{job}} {{phase}}'),
          t(quantile(0.99, 'pdserve_engine_step_seconds', 'job, phase'), 'p99 {{job}} {{phase}}'),
        ]),
        graph('Engine batch size', 'short', [
          t(quantile(0.5, 'pdserve_engine_batch_size', 'job'), 'p50 {{job}}'),
          t(quantile(0.99, 'pdserve_engine_batch_size', 'job'), 'p99 {{job}}'),
        ]),
        graph('Speculative decoding: acceptance rate', 'percentunit', [
          t(`sum by (job) (${rate('pdserve_spec_accepted_tokens_total')}) / sum by (job) (${rate('pdserve_spec_draft_tokens_total')})`, '{{job}}'),
        ], { max: 1, description: 'Proposed tokens (draft model or n-gram lookup) the model accepted. Empty when speculation is off.' }),
        graph('Speculative decoding: tokens per verify step', 'short', [
          t(`sum by (job) (${rate('pdserve_spec_emitted_tokens_total')}) / sum by (job) (${rate('pdserve_spec_verify_steps_total')})`, 'mean tokens / step {{job}}'),
          t(`sum by (job) (${rate('pdserve_spec_draft_tokens_total')}) / sum by (job) (${rate('pdserve_spec_verify_steps_total')})`, 'mean proposed / step {{job}}'),
        ], { description: 'Per sequence per step: tokens produced (accepted + 1) and proposed. 1 produced = speculation bought nothing.' }),
      ],
    },
  ],
};

const kvCache: DashboardSpec = {
  uid: 'pdserve-kv-cache',
  title: 'pdserve / KV cache',
  description: 'Worker KV pools, prefix reuse, KV transfers between nodes and the kv-store tiers.',
  rows: [
    {
      row: 'Worker KV pools',
      panels: [
        graph('KV pool usage per worker', 'percentunit', [
          t(`${series('pdserve_kv_blocks_used')} / ${series('pdserve_kv_blocks_capacity')}`, '{{job}} {{instance}}'),
        ], { max: 1, thresholds: [{ value: 0.95, color: 'red' }], description: 'Blocks referenced by live sequences over pool size.' }),
        graph('KV blocks by pool', 'short', [
          t(`sum by (job) (${series('pdserve_kv_blocks_used')})`, 'used {{job}}'),
          t(`sum by (job) (${series('pdserve_kv_blocks_cached')})`, 'cached free {{job}}'),
          t(`sum by (job) (${series('pdserve_kv_blocks_capacity')})`, 'capacity {{job}}'),
        ]),
        graph('Prefix cache hit rate by pool', 'percentunit', [
          t(
            `sum by (job) (${rate('pdserve_prefix_cache_hit_tokens_total')}) / sum by (job) (${rate('pdserve_prefix_cache_query_tokens_total')})`,
            '{{job}}',
          ),
        ], {
          max: 1,
          description:
            "Prompt tokens found in the worker's own prefix cache. A decode worker's counts the prompt blocks a prefill worker streamed to it (they enter its cache before it computes the rest), so a decode pool reads near 100 %: the prefill and mixed pools' rates are the cluster's reuse, and queried − hit is what each worker computed.",
        }),
        graph('Prefix cache tokens / s', 'short', [
          t(`sum by (job) (${rate('pdserve_prefix_cache_hit_tokens_total')})`, 'hit {{job}}'),
          t(`sum by (job) (${rate('pdserve_prefix_cache_query_tokens_total')})`, 'queried {{job}}'),
        ]),
      ],
    },
    {
      row: 'KV transfers',
      panels: [
        graph('Transfer throughput by direction', 'Bps', [
          t(`sum by (job, direction, peer_role) (${rate('pdserve_kv_transfer_bytes_total')})`, '{{job}} {{direction}} ({{peer_role}})'),
        ], { w: 8 }),
        graph('Transfer duration p99 by transport', 's', [
          t(quantile(0.99, 'pdserve_kv_transfer_seconds', 'direction, transport'), '{{direction}} {{transport}}'),
        ], { w: 8 }),
        graph('Transfer failures / s', 'ops', [
          t(`sum by (job, direction, peer_role) (${rate('pdserve_kv_transfer_failures_total')})`, '{{job}} {{direction}} ({{peer_role}})'),
        ], { w: 8 }),
      ],
    },
    {
      row: 'KV store',
      panels: [
        graph('Store bytes by tier', 'bytes', [
          t(`sum by (tier) (${series('pdserve_kvstore_bytes')})`, 'held {{tier}}'),
          t(`sum by (tier) (${series('pdserve_kvstore_capacity_bytes')})`, 'capacity {{tier}}'),
        ], { w: 8 }),
        graph('Store blocks by tier', 'short', [t(`sum by (tier) (${series('pdserve_kvstore_blocks')})`, '{{tier}}')], { w: 8 }),
        graph('Store fill per node and tier', 'percentunit', [
          t(`${series('pdserve_kvstore_bytes')} / ${series('pdserve_kvstore_capacity_bytes')}`, '{{instance}} {{tier}}'),
        ], { w: 8, max: 1, thresholds: [{ value: 0.95, color: 'red' }] }),
        graph('Store hit rate', 'percentunit', [
          t(
            `sum(${rate('pdserve_kvstore_hits_total')}) / (sum(${rate('pdserve_kvstore_hits_total')}) + sum(${rate('pdserve_kvstore_misses_total')}))`,
            'hit rate',
          ),
        ], { w: 8, max: 1 }),
        graph('Evictions / s by tier', 'ops', [t(`sum by (tier) (${rate('pdserve_kvstore_evictions_total')})`, '{{tier}}')], {
          w: 8,
          description: 'Memory evictions move blocks to disk; disk evictions drop them.',
        }),
        graph('Store read / write bytes / s', 'Bps', [
          t(`sum by (tier) (${rate('pdserve_kvstore_read_bytes_total')})`, 'read {{tier}}'),
          t(`sum by (tier) (${rate('pdserve_kvstore_write_bytes_total')})`, 'write {{tier}}'),
        ], { w: 8 }),
      ],
    },
  ],
};

const router: DashboardSpec = {
  uid: 'pdserve-router',
  title: 'pdserve / Router',
  description: 'Where the KV-aware router sends work, how much prefix it reuses, and how even the load is.',
  rows: [
    {
      row: 'Decisions',
      panels: [
        graph('Decisions / s per worker', 'ops', [
          t(`sum by (worker, role) (${rate('pdserve_router_decisions_total')})`, '{{role}} {{worker}}'),
        ], { stack: true }),
        graph('Prefill placement', 'ops', [
          t(`sum by (mode, reason) (${rate('pdserve_router_prefill_total')})`, '{{mode}} {{reason}}'),
        ], { stack: true, description: 'Remote prefill on the prefill pool, or local on the decode worker (with the reason).' }),
        stat('Prefix hit ratio', 'percentunit', [
          t(
            `sum(${rate('pdserve_router_prefix_matched_blocks_total')}) / sum(${rate('pdserve_router_prefix_requested_blocks_total')})`,
            'matched / requested',
          ),
        ], { w: 6 }),
        stat('Remote prefill share', 'percentunit', [
          t(`sum(${rate('pdserve_router_prefill_total', 'mode="remote"')}) / sum(${rate('pdserve_router_prefill_total')})`, 'remote'),
        ], { w: 6 }),
        stat('Refused: no live worker / s', 'ops', [t(`sum(${rate('pdserve_router_no_candidate_total')})`, 'no candidate')], {
          w: 6,
          thresholds: [{ value: 0.001, color: 'red' }],
        }),
        stat('Decisions by policy / s', 'ops', [t(`sum by (policy) (${rate('pdserve_router_decisions_total', 'role="decode"')})`, '{{policy}}')], {
          w: 6,
        }),
      ],
    },
    {
      row: 'Prefix reuse',
      panels: [
        graph('Prefix hit ratio (matched / requested blocks)', 'percentunit', [
          t(
            `sum by (job) (${rate('pdserve_router_prefix_matched_blocks_total')}) / sum by (job) (${rate('pdserve_router_prefix_requested_blocks_total')})`,
            '{{job}}',
          ),
        ], { max: 1 }),
        graph('Matched blocks / s by tier', 'short', [
          t(`sum by (tier) (${rate('pdserve_router_prefix_tier_blocks_total')})`, '{{tier}}'),
        ], { stack: true, description: 'The fastest tier holding each matched block: device is free, host/disk/store must be fetched.' }),
      ],
    },
    {
      row: 'Load balance',
      panels: [
        graph('Load imbalance (max / avg running)', 'short', [
          t(
            `max by (job) (${series('pdserve_engine_running_sequences', WORKERS)}) / avg by (job) (${series('pdserve_engine_running_sequences', WORKERS)})`,
            '{{job}}',
          ),
        ], { w: 8, description: '1 is perfectly even; 2 means the busiest worker runs twice the average.' }),
        graph('Running sequences per worker', 'short', [
          t(`${series('pdserve_engine_running_sequences', WORKERS)}`, '{{job}} {{instance}}'),
        ], { w: 8 }),
        graph('Waiting sequences per worker', 'short', [
          t(`${series('pdserve_engine_waiting_sequences', WORKERS)}`, '{{job}} {{instance}}'),
        ], { w: 8 }),
        graph('KV pool usage per worker', 'percentunit', [
          t(`${series('pdserve_kv_blocks_used', WORKERS)} / ${series('pdserve_kv_blocks_capacity', WORKERS)}`, '{{job}} {{instance}}'),
        ], { max: 1 }),
        graph('Prefill tokens computed / s per worker', 'short', [
          t(
            `sum by (job, instance) (${rate('pdserve_prefix_cache_query_tokens_total', WORKERS)}) - sum by (job, instance) (${rate('pdserve_prefix_cache_hit_tokens_total', WORKERS)})`,
            '{{job}} {{instance}}',
          ),
        ], { description: 'Prompt tokens each worker had to compute (queried minus cache hits).' }),
      ],
    },
  ],
};

const JOB = 'job=~"$job"';

const resources: DashboardSpec = {
  uid: 'pdserve-resources',
  title: 'pdserve / Resources',
  description: 'CPU, memory, event loop and engine time per service and pod.',
  jobVariable: true,
  rows: [
    {
      row: 'Versions',
      panels: [
        stat('Pods by version', 'short', [t(`count by (version, nodejs_version) (${series('pdserve_build_info', JOB)})`, '{{version}} (Node.js {{nodejs_version}})')], {
          w: 24,
          h: 3,
          description: 'pdserve_build_info of every scraped pod: more than one version means a rollout is under way.',
        }),
      ],
    },
    {
      row: 'CPU and memory',
      panels: [
        graph('CPU (cores) per pod', 'short', [t(rate('pdserve_process_cpu_seconds_total', JOB), '{{job}} {{instance}}')]),
        graph('CPU (cores) per service', 'short', [t(`sum by (job) (${rate('pdserve_process_cpu_seconds_total', JOB)})`, '{{job}}')], {
          stack: true,
        }),
        graph('Resident memory per pod', 'bytes', [t(`${series('pdserve_process_resident_memory_bytes', JOB)}`, '{{job}} {{instance}}')]),
        graph('Heap and external memory per pod', 'bytes', [
          t(`${series('pdserve_nodejs_heap_size_used_bytes', JOB)}`, 'heap {{job}} {{instance}}'),
          t(`${series('pdserve_nodejs_external_memory_bytes', JOB)}`, 'external {{job}} {{instance}}'),
        ], { description: 'External memory includes ArrayBuffers: KV pools and transfer buffers live there.' }),
      ],
    },
    {
      row: 'Event loop',
      panels: [
        graph('Event loop lag p99', 's', [t(`${series('pdserve_nodejs_eventloop_lag_p99_seconds', JOB)}`, '{{job}} {{instance}}')], {
          w: 8,
          thresholds: [{ value: 0.1, color: 'red' }],
        }),
        graph('GC time / s', 'percentunit', [
          t(`sum by (job, instance) (${rate('pdserve_nodejs_gc_duration_seconds_sum', JOB)})`, '{{job}} {{instance}}'),
        ], { w: 8 }),
        graph('Open file descriptors and handles', 'short', [
          t(`${series('pdserve_process_open_fds', JOB)}`, 'fds {{job}} {{instance}}'),
          t(`${series('pdserve_nodejs_active_handles_total', JOB)}`, 'handles {{job}} {{instance}}'),
        ], { w: 8 }),
      ],
    },
    {
      row: 'Engine time',
      panels: [
        graph('Engine time split (s / s)', 'percentunit', [
          t(`sum by (job, instance) (${rate('pdserve_engine_model_seconds_total', JOB)})`, 'model {{instance}}'),
          t(`sum by (job, instance) (${rate('pdserve_engine_overhead_seconds_total', JOB)})`, 'overhead {{instance}}'),
        ], { stack: true, description: 'Fraction of wall time inside session.run (model) and outside it (scheduling, sampling).' }),
        graph('Engine steps / s', 'ops', [t(`sum by (job, instance) (${rate('pdserve_engine_steps_total', JOB)})`, '{{job}} {{instance}}')]),
      ],
    },
  ],
};

export const DASHBOARDS: readonly DashboardSpec[] = [overview, kvCache, router, resources];

function thresholds(p: PanelSpec): Json {
  return {
    mode: 'absolute',
    steps: [{ color: 'green', value: null }, ...(p.thresholds ?? []).map((s) => ({ color: s.color, value: s.value }))],
  };
}

function panelJson(p: PanelSpec, id: number, x: number, y: number, w: number, h: number): Json {
  const targets = p.targets.map((tg, i) => ({
    datasource: DS,
    editorMode: 'code',
    expr: tg.expr,
    legendFormat: tg.legend,
    range: true,
    refId: String.fromCharCode(65 + i),
  }));
  const defaults: Record<string, Json> = { unit: p.unit, thresholds: thresholds(p), color: { mode: p.kind === 'stat' ? 'thresholds' : 'palette-classic' } };
  if (p.max !== undefined) defaults['max'] = p.max;
  if (p.kind === 'timeseries') {
    defaults['custom'] = {
      drawStyle: 'line',
      lineWidth: 1,
      fillOpacity: p.stack ? 30 : 10,
      showPoints: 'never',
      spanNulls: false,
      stacking: { mode: p.stack ? 'normal' : 'none', group: 'A' },
      thresholdsStyle: { mode: p.thresholds ? 'line' : 'off' },
    };
  }
  const options: Json =
    p.kind === 'timeseries'
      ? { legend: { displayMode: 'list', placement: 'bottom', showLegend: true }, tooltip: { mode: 'multi', sort: 'desc' } }
      : { colorMode: 'value', graphMode: 'area', justifyMode: 'auto', reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false }, textMode: 'auto' };
  return {
    datasource: DS,
    ...(p.description === undefined ? {} : { description: p.description }),
    fieldConfig: { defaults, overrides: [] },
    gridPos: { h, w, x, y },
    id,
    options,
    targets,
    title: p.title,
    type: p.kind,
  };
}

function variables(d: DashboardSpec): Json[] {
  const vars: Json[] = [
    {
      current: {},
      hide: 0,
      includeAll: false,
      label: 'Data source',
      multi: false,
      name: 'datasource',
      options: [],
      query: 'prometheus',
      refresh: 1,
      regex: '',
      type: 'datasource',
    },
    {
      allValue: '.*',
      current: { selected: true, text: ['All'], value: ['$__all'] },
      datasource: DS,
      definition: 'label_values(up{job=~"pdserve-.+"}, namespace)',
      hide: 0,
      includeAll: true,
      label: 'Namespace',
      multi: true,
      name: 'namespace',
      options: [],
      query: { query: 'label_values(up{job=~"pdserve-.+"}, namespace)', refId: 'namespace' },
      refresh: 2,
      regex: '',
      sort: 1,
      type: 'query',
    },
    {
      // Workers report their engine gauges (with the served model) from start-up, before any request.
      allValue: '.*',
      current: { selected: true, text: ['All'], value: ['$__all'] },
      datasource: DS,
      definition: 'label_values(pdserve_engine_running_sequences{namespace=~"$namespace"}, model)',
      hide: 0,
      includeAll: true,
      label: 'Model',
      multi: true,
      name: 'model',
      options: [],
      query: { query: 'label_values(pdserve_engine_running_sequences{namespace=~"$namespace"}, model)', refId: 'model' },
      refresh: 2,
      regex: '',
      sort: 1,
      type: 'query',
    },
  ];
  if (d.jobVariable) {
    vars.push({
      allValue: 'pdserve-.+',
      current: { selected: true, text: ['All'], value: ['$__all'] },
      datasource: DS,
      definition: 'label_values(pdserve_process_cpu_seconds_total{namespace=~"$namespace"}, job)',
      hide: 0,
      includeAll: true,
      label: 'Service',
      multi: true,
      name: 'job',
      options: [],
      query: { query: 'label_values(pdserve_process_cpu_seconds_total{namespace=~"$namespace"}, job)', refId: 'job' },
      refresh: 2,
      regex: '',
      sort: 1,
      type: 'query',
    });
  }
  return vars;
}

export function dashboardJson(d: DashboardSpec): Json {
  const panels: Json[] = [];
  let id = 1;
  let y = 0;
  for (const r of d.rows) {
    panels.push({ collapsed: false, gridPos: { h: 1, w: 24, x: 0, y }, id: id++, panels: [], title: r.row, type: 'row' });
    y += 1;
    let x = 0;
    let rowH = 0;
    for (const p of r.panels) {
      const w = p.w ?? (p.kind === 'stat' ? 4 : 12);
      const h = p.h ?? (p.kind === 'stat' ? 4 : 8);
      if (x + w > 24) {
        x = 0;
        y += rowH;
        rowH = 0;
      }
      panels.push(panelJson(p, id++, x, y, w, h));
      x += w;
      rowH = Math.max(rowH, h);
    }
    y += rowH;
  }
  return {
    annotations: {
      list: [
        {
          builtIn: 1,
          datasource: { type: 'grafana', uid: '-- Grafana --' },
          enable: true,
          hide: true,
          iconColor: 'rgba(0, 211, 255, 1)',
          name: 'Annotations & Alerts',
          type: 'dashboard',
        },
      ],
    },
    description: d.description,
    editable: true,
    fiscalYearStartMonth: 0,
    graphTooltip: 1,
    id: null,
    links: [{ asDropdown: true, includeVars: true, keepTime: true, tags: ['pdserve'], title: 'pdserve', type: 'dashboards' }],
    panels,
    refresh: '30s',
    schemaVersion: 39,
    tags: ['pdserve'],
    templating: { list: variables(d) },
    time: { from: 'now-1h', to: 'now' },
    timepicker: {},
    timezone: '',
    title: d.title,
    uid: d.uid,
    version: 1,
    weekStart: '',
  };
}

/** File name (`<uid>.json`) → file text, as committed. */
export function renderDashboards(): Map<string, string> {
  return new Map(DASHBOARDS.map((d) => [`${d.uid}.json`, JSON.stringify(dashboardJson(d), null, 2) + '\n']));
}

/** Where the generated files go: beside this file, and the chart's copy for its dashboards ConfigMap. */
export const DASHBOARD_DIRS: readonly string[] = [
  dirname(fileURLToPath(import.meta.url)),
  join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'helm', 'pdserve', 'dashboards'),
];

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const dir of DASHBOARD_DIRS) {
    for (const [name, text] of renderDashboards()) writeFileSync(join(dir, name), text);
  }
  process.stdout.write(`wrote ${DASHBOARDS.length} dashboards to ${DASHBOARD_DIRS.join(' and ')}\n`);
}
