// Puts between beginPut and commit: their reservations, the bytes written so far, and their deadlines.
import { randomUUID } from 'node:crypto';
import type { BlockHash, BlockKey } from './keys';

export interface PendingBlock {
  readonly key: BlockKey;
  readonly size: number;
  /** Held by the store when the put began: not reserved, writing it is optional. */
  readonly alreadyStored: boolean;
  /** The store's own copy of the written bytes, and their crc32; absent until written. */
  bytes: Uint8Array | undefined;
  crc: number;
  /**
   * A store buffer handed to a transfer to read this block's bytes into (see KvStore.placement). Written
   * with it, the block keeps it without a copy; if the put ends otherwise, it is dropped, never reused (a
   * read of a failed transfer may still land in it).
   */
  target: Uint8Array | undefined;
}

export interface PendingPut {
  readonly id: string;
  readonly modelId: string;
  readonly blocks: ReadonlyMap<BlockHash, PendingBlock>;
  /** Memory-tier bytes held for this put (sum of sizes of the blocks not already stored). */
  readonly reservedBytes: number;
  /** Lease that keeps the already-stored blocks alive until commit; undefined when there are none. */
  readonly leaseId: string | undefined;
  readonly expiresAt: number;
}

export class PutTable {
  private readonly puts = new Map<string, PendingPut>();

  get size(): number {
    return this.puts.size;
  }

  add(put: Omit<PendingPut, 'id'>): PendingPut {
    const entry: PendingPut = { id: randomUUID(), ...put };
    this.puts.set(entry.id, entry);
    return entry;
  }

  get(id: string): PendingPut | undefined {
    return this.puts.get(id);
  }

  delete(id: string): boolean {
    return this.puts.delete(id);
  }

  expired(now: number): PendingPut[] {
    return [...this.puts.values()].filter((p) => p.expiresAt <= now);
  }

  all(): PendingPut[] {
    return [...this.puts.values()];
  }
}
