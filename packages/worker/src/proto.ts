// Loads the Worker contract at runtime and types it with the hand-kept mirrors in wire.ts.
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import { CONTROL_GRPC_OPTIONS, MAX_CONTROL_MESSAGE_BYTES, loadProto, loadService } from '@pdserve/rpc';
import type * as W from './wire';

export const WORKER_PROTO = 'pdserve/v1/worker.proto';
export const MAX_MESSAGE_BYTES = MAX_CONTROL_MESSAGE_BYTES;
export const WORKER_GRPC_OPTIONS = CONTROL_GRPC_OPTIONS;
/** Default deadlines of the calls (ms); a Generate's own follows its length (generateDeadlineMs). */
export const DEADLINES = { health: 2_000, stats: 2_000, snapshot: 10_000, prefill: 120_000 } as const;

/** A Generate's deadline: time to queue and prefill, then this long per token it may still produce (ms). */
export const GENERATE_DEADLINE = { baseMs: 120_000, perTokenMs: 1_000 } as const;

/**
 * The deadline of a Generate stream that may still produce `maxTokens` tokens after `contextTokens` (prompt
 * plus tokens already generated), capped by the model's context: a long generation is not cut at a fixed
 * time, and a short one does not hold a dead stream open for minutes.
 */
export function generateDeadlineMs(contextTokens: number, maxTokens: number, maxModelLen: number): number {
  const tokens = Math.max(1, Math.min(maxTokens, maxModelLen - contextTokens));
  return GENERATE_DEADLINE.baseMs + tokens * GENERATE_DEADLINE.perTokenMs;
}

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
