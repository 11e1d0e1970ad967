// Loads the Worker contract at runtime and types it with the hand-kept mirrors in wire.ts.
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import { CONTROL_GRPC_OPTIONS, MAX_CONTROL_MESSAGE_BYTES, loadProto, loadService } from '@pdserve/rpc';
import type * as W from './wire';

export const WORKER_PROTO = 'pdserve/v1/worker.proto';
export const MAX_MESSAGE_BYTES = MAX_CONTROL_MESSAGE_BYTES;
export const WORKER_GRPC_OPTIONS = CONTROL_GRPC_OPTIONS;
/** Default deadlines of the calls (ms). */
export const DEADLINES = { health: 2_000, stats: 2_000, snapshot: 10_000, prefill: 120_000, generate: 600_000 } as const;

export interface WorkerMethods {
  readonly Generate: MethodDefinition<W.GenerateRequestMsg, W.GenerateChunkMsg>;
  readonly Prefill: MethodDefinition<W.PrefillRequestMsg, W.PrefillEventMsg>;
  readonly Health: MethodDefinition<W.HealthRequestMsg, W.HealthResponseMsg>;
  readonly Stats: MethodDefinition<W.StatsRequestMsg, W.StatsResponseMsg>;
  readonly BlockSnapshot: MethodDefinition<W.BlockSnapshotRequestMsg, W.BlockSnapshotResponseMsg>;
}

export function loadWorkerPackage(): protoLoader.PackageDefinition {
  return loadProto(WORKER_PROTO);
}

export function workerService(): ServiceDefinition & WorkerMethods {
  return loadService<WorkerMethods>(WORKER_PROTO, 'pdserve.v1.Worker', 'Generate');
}
