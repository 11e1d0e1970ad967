// The cluster's shared values (roles, tiers, KV events, load reports) are contracts; the rest is the router's.
import type { WorkerRole } from '@pdserve/contracts';

export type { KvEvent, KvEventBatch, LoadReport, SnapshotEntry, Tier, WorkerRole } from '@pdserve/contracts';

/** A live worker as the registry knows it; the router never decides membership. */
export interface WorkerInfo {
  readonly id: string;
  readonly role: WorkerRole;
}

/**
 * Holder id under which the gateway applies the kv-store's own event stream (tier `store`).
 * Any entry in tier `store`, whoever reported it, is credited to every candidate at `storeCredit`.
 */
export const STORE_HOLDER = '$kv-store';

/** What the gateway asks the router to place. */
export interface RouteRequest {
  readonly requestId: string;
  /** Chained block hashes, one per full block of the prompt. */
  readonly chain: readonly string[];
  readonly promptTokens: number;
  /** Session or user key for `session-affinity`; other policies ignore it. */
  readonly sessionKey?: string;
}
