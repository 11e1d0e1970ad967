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

/**
 * Protocol an instance takes beyond what every release has, listed in its record so that a peer asks for it
 * only where it is understood (a rolling upgrade runs old and new instances side by side; an older one has no
 * list, and a newer one may list names this release does not know):
 * - 'leave-tail': a worker that, as the prefill side, honours a prefill target's `leave_tail` (older ones ignore
 *   the field and send the whole prompt's KV after a first token) and, as the decode side, takes a Generate
 *   with plan mode 'tail' (older ones refuse it).
 */
export type ServiceFeature = 'leave-tail';
/** The features this release's workers list. */
export const WORKER_FEATURES: readonly ServiceFeature[] = ['leave-tail'];

/** Whether `record` lists `feature`. */
export function hasFeature(record: Pick<ServiceRecord, 'features'>, feature: ServiceFeature): boolean {
  return record.features?.includes(feature) === true;
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
  /** Protocol it takes beyond every release's (ServiceFeature); absent on instances that predate the list. */
  readonly features?: readonly string[];
}

// KV events and load reports are contracts: the control plane carries what the router reads.
export type { BlockHash, KvEvent, KvEventBatch, LoadReport, Tier as KvTier } from '@pdserve/contracts';
export const KV_TIERS: readonly Tier[] = ['device', 'host', 'disk', 'store'];
