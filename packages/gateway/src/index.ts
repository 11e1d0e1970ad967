export { startGateway, type Gateway, type GatewayOptions } from './gateway';
export { ClusterClient, MIGRATION_DEFAULTS, type ClusterClientOptions } from './cluster-client';
export { ClusterView, type ClusterViewOptions } from './cluster-view';
export { MeteredEngine } from './metered-engine';
export { type ClusterStatus, type StoreNodeStatus, type StoreTierStatus, type WorkerStatus } from './status';
