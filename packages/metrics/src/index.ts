// @pdserve/metrics: each service's Prometheus metrics (prom-client), their catalog, and the admin HTTP port.
export { Registry } from 'prom-client';
export {
  COMMON_METRICS,
  DEFAULT_METRICS,
  GATEWAY_METRICS,
  KV_STORE_METRICS,
  METRIC_CATALOG,
  WORKER_METRICS,
  type CatalogEntry,
  type MetricSource,
  type MetricSpec,
  type MetricType,
} from './catalog.js';
export {
  BATCH_SIZE_BUCKETS,
  ITL_BUCKETS,
  QUEUE_TIME_BUCKETS,
  REQUEST_DURATION_BUCKETS,
  SEQUENCE_LENGTH_BUCKETS,
  STEP_BUCKETS,
  TRANSFER_BUCKETS,
  TTFT_BUCKETS,
} from './buckets.js';
export { registerMetrics, type MetricHandle, type MetricHandles } from './register.js';
export {
  METRIC_PREFIX,
  PDSERVE_VERSION,
  collectDefaultMetrics,
  gatewayMetrics,
  kvStoreMetrics,
  workerMetrics,
  type EngineStatsSnapshot,
  type GatewayMetrics,
  type GatewayMetricsOptions,
  type KvStoreMetrics,
  type KvStoreMetricsOptions,
  type RouterStatsSnapshot,
  type StoreTierSnapshot,
  type WorkerMetrics,
  type WorkerMetricsOptions,
} from './services.js';
export { startAdminServer, type AdminReply, type AdminServer, type AdminServerOptions } from './admin-server.js';
