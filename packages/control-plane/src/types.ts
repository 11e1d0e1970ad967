// The values that flow through the control plane: service records, KV events, load reports.
import type { Tier } from '@pdserve/contracts';

export type ServiceRole = 'gateway' | 'prefill' | 'decode' | 'mixed' | 'kv-store';
export const SERVICE_ROLES: readonly ServiceRole[] = ['gateway', 'prefill', 'decode', 'mixed', 'kv-store'];

export interface ServiceCapacity {
  readonly totalBlocks: number;
  /** Tokens per KV block. */
  readonly blockSize: number;
  readonly maxNumSeqs: number;
}

/** What an instance advertises in the registry. `id` is stable across restarts; `incarnation` is not. */
export interface ServiceRecord {
  readonly id: string;
  readonly role: ServiceRole;
  readonly grpcAddress: string;
  readonly adminAddress: string;
  readonly model: string;
  readonly capacity: ServiceCapacity;
  /** Opaque advertisement of the instance's transfer engine (transports, data-plane address, …). */
  readonly transfer?: unknown;
  /** host:port of its tcp data port, which receivers pull its KV from: the only data ports they dial. */
  readonly dataAddress?: string;
  /** Unique per process start; a new incarnation means the old one's KV cache is gone. */
  readonly incarnation: string;
  /** Epoch milliseconds. */
  readonly startedAt: number;
}

// KV events and load reports are contracts: the control plane carries what the router reads.
export type { BlockHash, KvEvent, KvEventBatch, LoadReport, Tier as KvTier } from '@pdserve/contracts';
export const KV_TIERS: readonly Tier[] = ['device', 'host', 'disk', 'store'];
