// Loads the Worker contract at runtime and types it with the hand-kept mirrors in wire.ts.
import { fileURLToPath } from 'node:url';
import type { ChannelOptions, MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type * as W from './wire';

export const PROTO_ROOT = fileURLToPath(new URL('../../../proto', import.meta.url));
export const WORKER_PROTO = 'pdserve/v1/worker.proto';

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
};

/** Control messages only (KV bytes go through the transfer engine): 16 MiB is far above any of them. */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

export const WORKER_GRPC_OPTIONS: ChannelOptions = {
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
};

/** Deadlines of the unary calls (ms); streams get theirs from the request. */
export const DEADLINES = { health: 2_000, stats: 2_000, snapshot: 10_000, cancel: 2_000, prefill: 120_000, generate: 600_000 } as const;

export interface WorkerMethods {
  readonly Generate: MethodDefinition<W.GenerateRequestMsg, W.GenerateChunkMsg>;
  readonly Prefill: MethodDefinition<W.PrefillRequestMsg, W.PrefillResponseMsg>;
  readonly Cancel: MethodDefinition<W.CancelRequestMsg, W.CancelResponseMsg>;
  readonly Health: MethodDefinition<W.HealthRequestMsg, W.HealthResponseMsg>;
  readonly Stats: MethodDefinition<W.StatsRequestMsg, W.StatsResponseMsg>;
  readonly BlockSnapshot: MethodDefinition<W.BlockSnapshotRequestMsg, W.BlockSnapshotResponseMsg>;
}

let loaded: protoLoader.PackageDefinition | null = null;

export function loadWorkerPackage(): protoLoader.PackageDefinition {
  loaded ??= protoLoader.loadSync(WORKER_PROTO, LOADER_OPTIONS);
  return loaded;
}

export function workerService(): ServiceDefinition & WorkerMethods {
  const def = loadWorkerPackage()['pdserve.v1.Worker'];
  if (def === undefined || !('Generate' in def)) throw new Error(`${WORKER_PROTO} has no pdserve.v1.Worker service`);
  // The one cast from proto-loader's untyped definition to the hand-kept message types.
  return def as unknown as ServiceDefinition & WorkerMethods;
}
