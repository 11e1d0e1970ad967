// `@pdserve/worker/client`: what a caller of the Worker service needs (the gateway, tools), without the
// worker itself (and so without the engine and onnxruntime-node).
export { WorkerClient, WorkerCallError, prefillDone, prefillFirst, toCallError } from './client';
export { generateDeadlineMs } from './proto';
export { afterStreamedFirst } from './streamed-first';
export { samplingToWire, outputFromWire, firstFromWire, seededSampling } from './codec';
export type {
  BlockSnapshotResponseMsg,
  GenerateChunkMsg,
  GenerateRequestMsg,
  HealthResponseMsg,
  PrefillEventMsg,
  PrefillFirstMsg,
  PrefillRequestMsg,
  SamplingParamsMsg,
  StatsResponseMsg,
} from './wire';
