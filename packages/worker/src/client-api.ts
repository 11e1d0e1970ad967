// `@pdserve/worker/client`: what a caller of the Worker service needs (the gateway, tools), without the
// worker itself (and so without the engine and onnxruntime-node).
export { WorkerClient, WorkerCallError, prefillFirst, toCallError } from './client';
export { afterStreamedFirst } from './streamed-first';
export { samplingFromWire, samplingToWire, outputFromWire, outputToWire, firstFromWire, seededSampling } from './codec';
export { DEADLINES, MAX_MESSAGE_BYTES, WORKER_GRPC_OPTIONS, WORKER_PROTO } from './proto';
export type * from './wire';
