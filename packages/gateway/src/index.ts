export { startGateway, type Gateway, type GatewayOptions } from './gateway';
export { ClusterClient, MIGRATION_DEFAULTS, type AdmissionEvent, type ClusterClientOptions } from './cluster-client';
export { Admission, parseClassSlos, type AdmissionInput, type AdmissionOptions, type AdmissionVerdict, type ClassSlos } from './admission';
export { ClusterView, type ClusterViewOptions } from './cluster-view';
export { MeteredEngine } from './metered-engine';
export { type ClusterStatus, type StoreNodeStatus, type StoreTierStatus, type WorkerStatus } from './status';
