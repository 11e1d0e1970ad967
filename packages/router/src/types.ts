/** Where a KV block can sit. `store` is the cluster kv-store, which is not a worker. */
export type Tier = 'device' | 'host' | 'disk' | 'store';

export type WorkerRole = 'prefill' | 'decode' | 'mixed';

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

export type KvEvent =
  | { readonly kind: 'stored'; readonly hashes: readonly string[]; readonly tier: Tier }
  | { readonly kind: 'removed'; readonly hashes: readonly string[]; readonly tier: Tier }
  | { readonly kind: 'cleared' };

/** One publish from one worker; `seq` rises by exactly 1 per batch within an incarnation. */
export interface KvEventBatch {
  readonly worker: string;
  readonly incarnation: string;
  readonly seq: number;
  readonly events: readonly KvEvent[];
}

/** One line of a worker's snapshot: this block is held in this tier (a block may appear once per tier). */
export interface SnapshotEntry {
  readonly hash: string;
  readonly tier: Tier;
}

export interface LoadReport {
  readonly worker: string;
  /** Sequences in the running batch. */
  readonly running: number;
  /** Sequences admitted but not yet running (waiting for prefill or for blocks). */
  readonly waiting: number;
  readonly freeBlocks: number;
  readonly totalBlocks: number;
  /** Prompt tokens still to be prefilled on this worker. */
  readonly queuedPrefillTokens: number;
  /** When the worker produced the report, ms since the epoch (worker clock). */
  readonly ts: number;
}

/** What the gateway asks the router to place. */
export interface RouteRequest {
  readonly requestId: string;
  /** Chained block hashes, one per full block of the prompt. */
  readonly chain: readonly string[];
  readonly promptTokens: number;
  /** Session or user key for `session-affinity`; other policies ignore it. */
  readonly sessionKey?: string;
}
