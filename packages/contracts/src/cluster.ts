// What workers tell the cluster about themselves, and how the gateway reads it: their role, the blocks
// they hold (KV events and snapshots) and their load. Carried by the control plane, read by the router.

export type WorkerRole = 'prefill' | 'decode' | 'mixed';

export const WORKER_ROLES: readonly WorkerRole[] = ['prefill', 'decode', 'mixed'];

export function isWorkerRole(value: unknown): value is WorkerRole {
  return (WORKER_ROLES as readonly unknown[]).includes(value);
}

/** Where a KV block can sit. `store` is the cluster kv-store, which is not a worker. */
export type Tier = 'device' | 'host' | 'disk' | 'store';

/** A chained block hash as kv-cache's chainHashes makes it: 16 lowercase hex characters (64 bits). */
export type BlockHash = string;

const BLOCK_HASH = /^[0-9a-f]{16}$/;

export function isBlockHash(value: unknown): value is BlockHash {
  return typeof value === 'string' && BLOCK_HASH.test(value);
}

export type KvEvent =
  | { readonly kind: 'stored'; readonly hashes: readonly BlockHash[]; readonly tier: Tier }
  | { readonly kind: 'removed'; readonly hashes: readonly BlockHash[]; readonly tier: Tier }
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
  readonly hash: BlockHash;
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
