// The values that go in and out of the store: one request and one result shape per call.
import type { BlockHash } from './keys';

/** Where a block sits inside one store node. */
export type StoreTier = 'memory' | 'disk';

export interface PutEntry {
  readonly hash: BlockHash;
  /** Exact byte length of the encoded block that writeBlock will send. */
  readonly size: number;
}

export interface BeginPutOptions {
  /** How long the put may stay uncommitted before it is reclaimed, in ms. */
  readonly ttlMs?: number;
}

export interface BeginPutResult {
  readonly putId: string;
  /** Hashes already held by the store: writing them is optional, and they are kept alive until commit. */
  readonly alreadyStored: readonly BlockHash[];
  /** Memory-tier bytes reserved for the other entries. */
  readonly reservedBytes: number;
  /** Epoch ms after which the put is reclaimed. */
  readonly expiresAt: number;
}

export interface CommitResult {
  /** Hashes this commit made readable. */
  readonly stored: readonly BlockHash[];
  /** Hashes that were already held (re-puts are idempotent). */
  readonly alreadyStored: readonly BlockHash[];
}

export interface GetOptions {
  /** How long the returned blocks stay protected from eviction and removal, in ms. */
  readonly leaseMs?: number;
  /**
   * Check memory blocks against their CRC here (default true). False when the reader checks every block
   * against `crc` anyway (the transfer engine does, end to end): one pass over the bytes instead of two.
   * A reader that finds a mismatch then calls `recheck`, which drops what is corrupt here. Disk blocks
   * are always checked here (a torn or corrupt file is dropped).
   */
  readonly verifyMemory?: boolean;
}

export interface FoundBlock {
  /** The encoded block. The store's own buffer for memory hits: treat it as read-only. */
  readonly bytes: Uint8Array;
  readonly tier: StoreTier;
  /** CRC-32 of `bytes` (checked against them on this read unless verifyMemory was false): what the transfer engine verifies in transit. */
  readonly crc: number;
}

export interface GetResult {
  /** Covers every found block; undefined when nothing was found. Release it when done reading. */
  readonly leaseId: string | undefined;
  /** Epoch ms when the lease lapses on its own. */
  readonly leaseExpiresAt: number;
  /** One per requested hash, in order; undefined when missing (or found corrupt and dropped). */
  readonly blocks: readonly (FoundBlock | undefined)[];
}

export interface PrefixResult {
  /** How many leading hashes of the chain the store holds. */
  readonly length: number;
  /** The best tier of each of those leading blocks. */
  readonly tiers: readonly StoreTier[];
}

export interface RemoveResult {
  readonly removed: readonly BlockHash[];
  /** Held by a read lease (or a pending put) and therefore kept; retry after the lease ends. */
  readonly leased: readonly BlockHash[];
}

export interface PinResult {
  /** The hashes found and pinned (missing ones are ignored). */
  readonly pinned: readonly BlockHash[];
  /** Epoch ms when these pins lapse. */
  readonly until: number;
}

/** What routers need to learn what the store holds; the service publishes these on NATS. */
export interface KvStoreEvent {
  readonly kind: 'stored' | 'removed';
  readonly tier: StoreTier;
  readonly modelId: string;
  readonly hashes: readonly BlockHash[];
}

export interface TierStats {
  readonly blocks: number;
  /** Bytes of stored blocks (disk: whole files, headers included). */
  readonly bytes: number;
  /** Bytes reserved for writes in flight (memory: uncommitted puts; disk: files being written or deleted). */
  readonly reservedBytes: number;
  /** bytes + reservedBytes: what the budget bounds. */
  readonly usedBytes: number;
  readonly capacityBytes: number;
  /** get() lookups answered by this tier. */
  readonly hits: number;
  /** get() lookups this tier could not answer (disk: also missed by memory, i.e. missing everywhere). */
  readonly misses: number;
  /** Blocks pushed out by the budget (memory: demoted or dropped; disk: deleted, gone). */
  readonly evictions: number;
  readonly readBytes: number;
  readonly writeBytes: number;
  /** Blocks found corrupt (by a read, a demotion or the open scan) and deleted. */
  readonly corruptDropped: number;
}

export interface KvStoreStats {
  readonly memory: TierStats;
  readonly disk: TierStats;
  readonly puts: {
    readonly active: number;
    readonly committed: number;
    readonly revoked: number;
    /** Puts not committed within their ttl, whose reservation and bytes the sweeper dropped. */
    readonly reclaimed: number;
  };
  readonly activeLeases: number;
  readonly activePins: number;
  /** Blocks copied memory → disk by eviction. */
  readonly demotions: number;
  /** Blocks copied disk → memory by a read. */
  readonly promotions: number;
}
