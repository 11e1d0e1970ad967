// Every metric pdserve exports, as data: the factories register from these specs, and tests check dashboards and
// alert rules against METRIC_CATALOG. Names carry the `pdserve_` prefix and their base unit; job/instance/pod
// come from the scrape, so no metric adds a service label of its own. `model` (the served model id) is on the
// request and engine metrics, where vLLM (model_name) and Dynamo (model) put it; HTTP metrics carry the route
// template, never the raw path, so the series count stays bounded whatever clients send.
import {
  BATCH_SIZE_BUCKETS,
  ITL_BUCKETS,
  QUEUE_TIME_BUCKETS,
  REQUEST_DURATION_BUCKETS,
  SEQUENCE_LENGTH_BUCKETS,
  STEP_BUCKETS,
  TRANSFER_BUCKETS,
  TTFT_BUCKETS,
} from './buckets';

export type MetricType = 'counter' | 'gauge' | 'histogram';

/** Which process exports a metric: `common` and `process` (prom-client's default set) every service does. */
export type MetricSource = 'gateway' | 'worker' | 'kv-store' | 'common' | 'process';

export interface MetricSpec {
  readonly name: string;
  readonly type: MetricType;
  readonly help: string;
  readonly labelNames: readonly string[];
  readonly buckets?: readonly number[];
}

/** Metrics every service exports. */
export const COMMON_METRICS = {
  buildInfo: {
    name: 'pdserve_build_info',
    type: 'gauge',
    help: 'Always 1: the pdserve version and the Node.js version this process runs.',
    labelNames: ['version', 'nodejs_version'],
  },
} as const satisfies Record<string, MetricSpec>;

export const GATEWAY_METRICS = {
  requests: {
    name: 'pdserve_requests_total',
    type: 'counter',
    help: "HTTP requests finished, by route template (/v1/completions, /v1/models/{model}; 'unmatched' for any path no route serves) and HTTP status code.",
    labelNames: ['model', 'route', 'status'],
  },
  timeToFirstToken: {
    name: 'pdserve_time_to_first_token_seconds',
    type: 'histogram',
    help: 'Time from request arrival to the first generated token leaving the gateway.',
    labelNames: ['model'],
    buckets: TTFT_BUCKETS,
  },
  interTokenLatency: {
    name: 'pdserve_inter_token_latency_seconds',
    type: 'histogram',
    help: 'Time between consecutive generated tokens of one request, as streamed.',
    labelNames: ['model'],
    buckets: ITL_BUCKETS,
  },
  requestDuration: {
    name: 'pdserve_request_duration_seconds',
    type: 'histogram',
    help: 'Time from request arrival to the last byte of the response, by route template.',
    labelNames: ['model', 'route'],
    buckets: REQUEST_DURATION_BUCKETS,
  },
  promptTokens: {
    name: 'pdserve_prompt_tokens_total',
    type: 'counter',
    help: 'Prompt tokens of admitted requests (after the chat template).',
    labelNames: ['model'],
  },
  generationTokens: {
    name: 'pdserve_generation_tokens_total',
    type: 'counter',
    help: 'Tokens generated and sent to clients.',
    labelNames: ['model'],
  },
  requestPromptTokens: {
    name: 'pdserve_request_prompt_tokens',
    type: 'histogram',
    help: "Input length: prompt tokens of each finished request (vLLM's request_prompt_tokens, Dynamo's input_sequence_tokens).",
    labelNames: ['model'],
    buckets: SEQUENCE_LENGTH_BUCKETS,
  },
  requestGenerationTokens: {
    name: 'pdserve_request_generation_tokens',
    type: 'histogram',
    help: "Output length: tokens generated for each finished request (vLLM's request_generation_tokens, Dynamo's output_sequence_tokens).",
    labelNames: ['model'],
    buckets: SEQUENCE_LENGTH_BUCKETS,
  },
  requestsInFlight: {
    name: 'pdserve_requests_in_flight',
    type: 'gauge',
    help: 'Requests admitted and not yet finished.',
    labelNames: ['model'],
  },
  migrations: {
    name: 'pdserve_migrations_total',
    type: 'counter',
    help: 'Streams that broke after tokens went out (worker died, drained, stream error): resumed on another decode worker, or exhausted (past --migration-limit, or refused there; the client got an error event).',
    labelNames: ['model', 'outcome'],
  },
  migrationSeconds: {
    name: 'pdserve_migration_seconds',
    type: 'histogram',
    help: 'Added latency of a migration: from the broken stream to the next token sent from the worker it resumed on.',
    labelNames: ['model'],
    buckets: TTFT_BUCKETS,
  },
  admissions: {
    name: 'pdserve_admission_decisions_total',
    type: 'counter',
    help: "Admission by service class (priority, default, flex): admitted, or refused with 429 because the predicted time to first token missed the class's SLO.",
    labelNames: ['model', 'class', 'decision'],
  },
  predictedTtft: {
    name: 'pdserve_admission_predicted_ttft_seconds',
    type: 'histogram',
    help: 'Time to first token the gateway predicted at admission (from the queued prefill work on the chosen workers), by class: compare with pdserve_admission_actual_ttft_seconds.',
    labelNames: ['model', 'class'],
    buckets: TTFT_BUCKETS,
  },
  actualTtft: {
    name: 'pdserve_admission_actual_ttft_seconds',
    type: 'histogram',
    help: 'Time to first token of admitted requests, by service class (the outcome of each admission prediction).',
    labelNames: ['model', 'class'],
    buckets: TTFT_BUCKETS,
  },
  routerDecisions: {
    name: 'pdserve_router_decisions_total',
    type: 'counter',
    help: 'Routing choices: role is what the chosen worker does for the request (prefill or decode); a local prefill counts as prefill on the decode worker.',
    labelNames: ['policy', 'role', 'worker'],
  },
  routerPrefill: {
    name: 'pdserve_router_prefill_total',
    type: 'counter',
    help: 'Where prefill ran: mode remote (a prefill worker) or local (on the decode worker, with the reason).',
    labelNames: ['mode', 'reason'],
  },
  routerNoCandidate: {
    name: 'pdserve_router_no_candidate_total',
    type: 'counter',
    help: 'Requests refused because no decode-capable worker was live.',
    labelNames: [],
  },
  routerPrefixMatchedBlocks: {
    name: 'pdserve_router_prefix_matched_blocks_total',
    type: 'counter',
    help: 'Prompt blocks already cached for the worker that prefills; prefix hit ratio = matched / requested.',
    labelNames: [],
  },
  routerPrefixRequestedBlocks: {
    name: 'pdserve_router_prefix_requested_blocks_total',
    type: 'counter',
    help: 'Full prompt blocks looked up in the global prefix index.',
    labelNames: [],
  },
  routerPrefixTierBlocks: {
    name: 'pdserve_router_prefix_tier_blocks_total',
    type: 'counter',
    help: 'Matched prefix blocks by the fastest tier that holds them (device, host, disk, store).',
    labelNames: ['tier'],
  },
} as const satisfies Record<string, MetricSpec>;

export const WORKER_METRICS = {
  runningSequences: {
    name: 'pdserve_engine_running_sequences',
    type: 'gauge',
    help: 'Sequences in the running batch.',
    labelNames: ['model'],
  },
  waitingSequences: {
    name: 'pdserve_engine_waiting_sequences',
    type: 'gauge',
    help: 'Sequences queued for admission.',
    labelNames: ['model'],
  },
  kvBlocksUsed: {
    name: 'pdserve_kv_blocks_used',
    type: 'gauge',
    help: 'KV pool blocks referenced by live sequences (free cached blocks not included).',
    labelNames: ['model'],
  },
  kvBlocksCached: {
    name: 'pdserve_kv_blocks_cached',
    type: 'gauge',
    help: 'Free KV pool blocks that still hold a reusable prefix (evicted least-recently-used first).',
    labelNames: ['model'],
  },
  kvBlocksCapacity: {
    name: 'pdserve_kv_blocks_capacity',
    type: 'gauge',
    help: 'KV pool size in blocks (renamed from pdserve_kv_blocks_total: a gauge must not read as a counter).',
    labelNames: ['model'],
  },
  prefixCacheHitTokens: {
    name: 'pdserve_prefix_cache_hit_tokens_total',
    type: 'counter',
    help: 'Prompt tokens served from the local prefix cache.',
    labelNames: ['model'],
  },
  prefixCacheQueryTokens: {
    name: 'pdserve_prefix_cache_query_tokens_total',
    type: 'counter',
    help: 'Prompt tokens looked up in the local prefix cache; hit rate = hit / query.',
    labelNames: ['model'],
  },
  preemptions: {
    name: 'pdserve_preemptions_total',
    type: 'counter',
    help: 'Sequences preempted because KV blocks ran out.',
    labelNames: ['model'],
  },
  steps: {
    name: 'pdserve_engine_steps_total',
    type: 'counter',
    help: 'Engine steps run.',
    labelNames: ['model'],
  },
  modelSeconds: {
    name: 'pdserve_engine_model_seconds_total',
    type: 'counter',
    help: 'Time spent inside session.run.',
    labelNames: ['model'],
  },
  overheadSeconds: {
    name: 'pdserve_engine_overhead_seconds_total',
    type: 'counter',
    help: 'Step time spent outside session.run (scheduling, gather/scatter, sampling).',
    labelNames: ['model'],
  },
  stepSeconds: {
    name: 'pdserve_engine_step_seconds',
    type: 'histogram',
    help: 'Duration of one engine step, by phase (prefill, decode, mixed).',
    labelNames: ['model', 'phase'],
    buckets: STEP_BUCKETS,
  },
  queueTime: {
    name: 'pdserve_request_queue_time_seconds',
    type: 'histogram',
    help: "Time a request waited in the engine's queue before its first step (vLLM's request_queue_time_seconds); a request preempted later does not count twice.",
    labelNames: ['model'],
    buckets: QUEUE_TIME_BUCKETS,
  },
  batchSize: {
    name: 'pdserve_engine_batch_size',
    type: 'histogram',
    help: 'Sequences in one engine step.',
    labelNames: ['model'],
    buckets: BATCH_SIZE_BUCKETS,
  },
  specDraftTokens: {
    name: 'pdserve_spec_draft_tokens_total',
    type: 'counter',
    help: 'Speculative decoding: tokens proposed (by the draft model or n-gram lookup) and verified by the model.',
    labelNames: ['model'],
  },
  specAcceptedTokens: {
    name: 'pdserve_spec_accepted_tokens_total',
    type: 'counter',
    help: 'Speculative decoding: proposed tokens the model accepted; acceptance rate = accepted / draft.',
    labelNames: ['model'],
  },
  specVerifySteps: {
    name: 'pdserve_spec_verify_steps_total',
    type: 'counter',
    help: 'Speculative decoding: sequence-steps that verified a proposal (one per sequence per step).',
    labelNames: ['model'],
  },
  specEmittedTokens: {
    name: 'pdserve_spec_emitted_tokens_total',
    type: 'counter',
    help: 'Speculative decoding: tokens those steps produced (accepted plus one each); mean tokens per step = emitted / verify steps.',
    labelNames: ['model'],
  },
  kvTransferBytes: {
    name: 'pdserve_kv_transfer_bytes_total',
    type: 'counter',
    help: 'KV bytes moved by the transfer engine, by direction (sent, received) and the peer role (prefill, decode, kv-store).',
    labelNames: ['direction', 'peer_role'],
  },
  kvTransferSeconds: {
    name: 'pdserve_kv_transfer_seconds',
    type: 'histogram',
    help: 'Duration of one KV transfer, by direction and transport (tcp, shm, grpc).',
    labelNames: ['direction', 'transport'],
    buckets: TRANSFER_BUCKETS,
  },
  kvTransferFailures: {
    name: 'pdserve_kv_transfer_failures_total',
    type: 'counter',
    help: 'KV transfers abandoned (peer gone, checksum mismatch, timeout), by direction and peer role.',
    labelNames: ['direction', 'peer_role'],
  },
} as const satisfies Record<string, MetricSpec>;

export const KV_STORE_METRICS = {
  blocks: {
    name: 'pdserve_kvstore_blocks',
    type: 'gauge',
    help: 'Blocks held, by tier (memory, disk).',
    labelNames: ['tier'],
  },
  bytes: {
    name: 'pdserve_kvstore_bytes',
    type: 'gauge',
    help: 'Bytes held, by tier.',
    labelNames: ['tier'],
  },
  capacityBytes: {
    name: 'pdserve_kvstore_capacity_bytes',
    type: 'gauge',
    help: 'Configured capacity, by tier.',
    labelNames: ['tier'],
  },
  hits: {
    name: 'pdserve_kvstore_hits_total',
    type: 'counter',
    help: 'Block reads served, by the tier that held the block.',
    labelNames: ['tier'],
  },
  misses: {
    name: 'pdserve_kvstore_misses_total',
    type: 'counter',
    help: 'Block reads for hashes the store does not hold.',
    labelNames: [],
  },
  evictions: {
    name: 'pdserve_kvstore_evictions_total',
    type: 'counter',
    help: 'Blocks evicted from a tier (memory evictions move to disk; disk evictions drop the block).',
    labelNames: ['tier'],
  },
  readBytes: {
    name: 'pdserve_kvstore_read_bytes_total',
    type: 'counter',
    help: 'Block bytes read, by tier.',
    labelNames: ['tier'],
  },
  writeBytes: {
    name: 'pdserve_kvstore_write_bytes_total',
    type: 'counter',
    help: 'Block bytes written, by tier.',
    labelNames: ['tier'],
  },
} as const satisfies Record<string, MetricSpec>;

/**
 * prom-client's default metrics as registered with the `pdserve_` prefix on Node 20 (process CPU and memory,
 * event loop lag, heap, handles, GC). A test keeps this list equal to what prom-client actually registers.
 */
export const DEFAULT_METRICS: readonly { readonly name: string; readonly type: MetricType; readonly labelNames: readonly string[] }[] = [
  { name: 'pdserve_process_cpu_user_seconds_total', type: 'counter', labelNames: [] },
  { name: 'pdserve_process_cpu_system_seconds_total', type: 'counter', labelNames: [] },
  { name: 'pdserve_process_cpu_seconds_total', type: 'counter', labelNames: [] },
  { name: 'pdserve_process_start_time_seconds', type: 'gauge', labelNames: [] },
  { name: 'pdserve_process_resident_memory_bytes', type: 'gauge', labelNames: [] },
  { name: 'pdserve_process_virtual_memory_bytes', type: 'gauge', labelNames: [] },
  { name: 'pdserve_process_heap_bytes', type: 'gauge', labelNames: [] },
  { name: 'pdserve_process_open_fds', type: 'gauge', labelNames: [] },
  { name: 'pdserve_process_max_fds', type: 'gauge', labelNames: [] },
  { name: 'pdserve_nodejs_eventloop_lag_seconds', type: 'gauge', labelNames: [] },
  { name: 'pdserve_nodejs_eventloop_lag_min_seconds', type: 'gauge', labelNames: [] },
  { name: 'pdserve_nodejs_eventloop_lag_max_seconds', type: 'gauge', labelNames: [] },
  { name: 'pdserve_nodejs_eventloop_lag_mean_seconds', type: 'gauge', labelNames: [] },
  { name: 'pdserve_nodejs_eventloop_lag_stddev_seconds', type: 'gauge', labelNames: [] },
  { name: 'pdserve_nodejs_eventloop_lag_p50_seconds', type: 'gauge', labelNames: [] },
  { name: 'pdserve_nodejs_eventloop_lag_p90_seconds', type: 'gauge', labelNames: [] },
  { name: 'pdserve_nodejs_eventloop_lag_p99_seconds', type: 'gauge', labelNames: [] },
  { name: 'pdserve_nodejs_active_resources', type: 'gauge', labelNames: ['type'] },
  { name: 'pdserve_nodejs_active_resources_total', type: 'gauge', labelNames: [] },
  { name: 'pdserve_nodejs_active_handles', type: 'gauge', labelNames: ['type'] },
  { name: 'pdserve_nodejs_active_handles_total', type: 'gauge', labelNames: [] },
  { name: 'pdserve_nodejs_active_requests', type: 'gauge', labelNames: ['type'] },
  { name: 'pdserve_nodejs_active_requests_total', type: 'gauge', labelNames: [] },
  { name: 'pdserve_nodejs_heap_size_total_bytes', type: 'gauge', labelNames: [] },
  { name: 'pdserve_nodejs_heap_size_used_bytes', type: 'gauge', labelNames: [] },
  { name: 'pdserve_nodejs_external_memory_bytes', type: 'gauge', labelNames: [] },
  { name: 'pdserve_nodejs_heap_space_size_total_bytes', type: 'gauge', labelNames: ['space'] },
  { name: 'pdserve_nodejs_heap_space_size_used_bytes', type: 'gauge', labelNames: ['space'] },
  { name: 'pdserve_nodejs_heap_space_size_available_bytes', type: 'gauge', labelNames: ['space'] },
  { name: 'pdserve_nodejs_version_info', type: 'gauge', labelNames: ['version', 'major', 'minor', 'patch'] },
  { name: 'pdserve_nodejs_gc_duration_seconds', type: 'histogram', labelNames: ['kind'] },
];

/** One exported metric family: what dashboards and rules may query. */
export interface CatalogEntry {
  readonly name: string;
  readonly type: MetricType;
  readonly source: MetricSource;
  readonly help: string;
  readonly labelNames: readonly string[];
}

function entries(source: MetricSource, specs: Readonly<Record<string, MetricSpec>>): CatalogEntry[] {
  return Object.values(specs).map((s) => ({ name: s.name, type: s.type, source, help: s.help, labelNames: s.labelNames }));
}

/** Every metric family any pdserve service exports, application metrics first, then the default set. */
export const METRIC_CATALOG: readonly CatalogEntry[] = [
  ...entries('common', COMMON_METRICS),
  ...entries('gateway', GATEWAY_METRICS),
  ...entries('worker', WORKER_METRICS),
  ...entries('kv-store', KV_STORE_METRICS),
  ...DEFAULT_METRICS.map((m) => ({ ...m, source: 'process' as const, help: 'prom-client default metric' })),
];
