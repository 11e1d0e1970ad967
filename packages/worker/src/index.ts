// @pdserve/worker: a prefill, decode or mixed worker (startWorkerService), and its client (also at
// @pdserve/worker/client, without the engine).
export * from './client-api';
export { LOAD_REPORT_INTERVAL_MS } from './server';
export { startWorkerService, type WorkerService, type WorkerServiceOptions } from './service';
export { StoreLink, type StoreLinkOptions } from './store-link';
