export { WorkerServer, seededSampling, type WorkerRole, type WorkerServerOptions } from './server';
export { WorkerClient, WorkerCallError, prefillFirst, toCallError } from './client';
export { afterStreamedFirst } from './streamed-first';
export { samplingFromWire, samplingToWire, outputFromWire, outputToWire, firstFromWire } from './codec';
export { DEADLINES, GENERATE_DEADLINE, generateDeadlineMs, MAX_MESSAGE_BYTES, WORKER_GRPC_OPTIONS, WORKER_PROTO } from './proto';
export type * from './wire';
export { startWorkerService, type WorkerService, type WorkerServiceOptions } from './service';
export { StoreLink, STORE_LINK_DEFAULTS, type StoreLinkOptions, type StoreLinkStats } from './store-link';
