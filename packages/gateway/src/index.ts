// @pdserve/gateway: the OpenAI API in front of the cluster (startGateway), and what its status page reports.
export { startGateway, type Gateway, type GatewayOptions } from './gateway';
export type { ClusterStatus } from './status';
export { MIGRATION_DEFAULTS } from './cluster-client';
export { parseClassSlos, type AdmissionOptions } from './admission';
