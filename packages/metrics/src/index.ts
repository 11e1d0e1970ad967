// @pdserve/metrics: each service's Prometheus metrics (prom-client), their catalog, and the admin HTTP port.
export { Registry } from 'prom-client';
export { METRIC_CATALOG } from './catalog';
export {
  collectDefaultMetrics,
  gatewayMetrics,
  kvStoreMetrics,
  workerMetrics,
  type GatewayMetrics,
  type GatewayMetricsOptions,
  type KvStoreMetricsOptions,
  type WorkerMetricsOptions,
} from './services';
export { startAdminServer, type AdminReply, type AdminServer, type AdminServerOptions } from './admin-server';
