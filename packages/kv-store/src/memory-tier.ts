// The memory tier: committed blocks in LRU order, and a byte budget shared with reservations for puts.
// Block buffers are recycled: a fresh 32 KiB ArrayBuffer per block written costs far more than copying
// into it (allocation, and the GC of external memory), so a block's buffer goes back to a free list once
// the block left the tier and nobody can still be reading it. Fresh buffers for a put are carved 16 to an
// arena, side by side, so that a transfer reads many blocks with one read; an arena's memory is freed when
// all 16 are (the budget counts block bytes: an arena pinned by one live block is slack it does not see,
// at most 15 blocks' worth per arena — and freed buffers are reused before any arena is carved).
import type { BlockHash, BlockKey } from './keys';

export interface MemoryEntry {
  readonly key: BlockKey;
  readonly modelId: string;
  readonly hash: BlockHash;
  readonly bytes: Uint8Array;
  /** crc32 of all of `bytes`, taken when the store received them; every read checks it (here, or at the reader). */
  readonly crc: number;
  /** Being copied to disk by eviction: not picked again. */
  demoting: boolean;
  /** Readers holding `bytes` under a read lease (a Get being sent). */
  lent: number;
  /** Left the tier; its buffer is recycled once nothing reads it. */
  retired: boolean;
  /** Lent under a lease that lapsed: a reader may still hold the bytes, so the buffer is never reused. */
  tainted: boolean;
}

/** A new entry (one literal: a put makes a thousand of these at once). */
export function memoryEntry(key: BlockKey, modelId: string, hash: BlockHash, bytes: Uint8Array, crc: number): MemoryEntry {
  return { key, modelId, hash, bytes, crc, demoting: false, lent: 0, retired: false, tainted: false };
}

/** Blocks per arena of fresh buffers: an arena is freed when all its blocks are (so at most this many are pinned by one). */
const ARENA_BLOCKS = 16;

/** Free block buffers by size, bounded in total. */
export class BufferPool {
  private readonly free = new Map<number, Uint8Array[]>();
  private pooled = 0;

  constructor(private readonly maxPooledBytes: number) {}

  /** A buffer of exactly `size` bytes, with arbitrary contents. */
  take(size: number): Uint8Array {
    const b = this.free.get(size)?.pop();
    if (b === undefined) return new Uint8Array(Buffer.allocUnsafeSlow(size).buffer, 0, size);
    this.pooled -= size;
    return b;
  }

  /**
   * `count` buffers of `size` bytes for blocks that arrive one after another: the last ones given back, in
   * the order they were given (blocks freed together come back together), then fresh ones carved from
   * arenas of ARENA_BLOCKS. Neighbours in memory let a transfer read many blocks with one read.
   */
  takeRun(size: number, count: number): Uint8Array[] {
    const list = this.free.get(size);
    const reused = list === undefined ? [] : list.splice(Math.max(0, list.length - count), count);
    this.pooled -= reused.length * size;
    const out = reused;
    while (out.length < count) {
      const n = Math.min(ARENA_BLOCKS, count - out.length);
      const arena = Buffer.allocUnsafeSlow(n * size).buffer;
      for (let k = 0; k < n; k++) out.push(new Uint8Array(arena, k * size, size));
    }
    return out;
  }

  give(b: Uint8Array): void {
    if (this.pooled + b.byteLength > this.maxPooledBytes) return;
    const list = this.free.get(b.byteLength) ?? [];
    list.push(b);
    this.free.set(b.byteLength, list);
    this.pooled += b.byteLength;
  }

  get pooledBytes(): number {
    return this.pooled;
  }
}

export class MemoryTier {
  /** Oldest first: a Map iterates in insertion order, and touch() re-inserts. */
  private readonly entries = new Map<BlockKey, MemoryEntry>();
  private stored = 0;
  private reserved = 0;

  /** Where blocks' buffers come from and go back to. */
  readonly buffers: BufferPool;

  constructor(readonly capacityBytes: number) {
    this.buffers = new BufferPool(Math.min(64 * 1024 * 1024, Math.floor(capacityBytes / 8)));
  }

  get blocks(): number {
    return this.entries.size;
  }

  get storedBytes(): number {
    return this.stored;
  }

  get reservedBytes(): number {
    return this.reserved;
  }

  /** What the budget bounds. */
  get usedBytes(): number {
    return this.stored + this.reserved;
  }

  get freeBytes(): number {
    return this.capacityBytes - this.usedBytes;
  }

  get(key: BlockKey): MemoryEntry | undefined {
    return this.entries.get(key);
  }

  has(key: BlockKey): boolean {
    return this.entries.has(key);
  }

  /** Marks the block most recently used. */
  touch(entry: MemoryEntry): void {
    this.entries.delete(entry.key);
    this.entries.set(entry.key, entry);
  }

  tryReserve(bytes: number): boolean {
    if (bytes > this.freeBytes) return false;
    this.reserved += bytes;
    return true;
  }

  unreserve(bytes: number): void {
    if (bytes > this.reserved) throw new Error(`memory tier: unreserving ${bytes} bytes but only ${this.reserved} are reserved`);
    this.reserved -= bytes;
  }

  /** Stores a block whose bytes were reserved beforehand (a committed put). */
  insertReserved(entry: MemoryEntry): void {
    this.unreserve(entry.bytes.byteLength);
    this.insert(entry);
  }

  /** Stores a block if it fits in `limitBytes` of usage (a promotion); false when it does not. */
  tryInsert(entry: MemoryEntry, limitBytes: number): boolean {
    if (this.usedBytes + entry.bytes.byteLength > Math.min(limitBytes, this.capacityBytes)) return false;
    this.insert(entry);
    return true;
  }

  delete(key: BlockKey): MemoryEntry | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    this.entries.delete(key);
    this.stored -= entry.bytes.byteLength;
    entry.retired = true;
    this.settle(entry);
    return entry;
  }

  /** A reader takes the block's bytes (under a read lease). */
  lend(entry: MemoryEntry): void {
    entry.lent += 1;
  }

  /** The reader is done with them. */
  giveBack(entry: MemoryEntry): void {
    entry.lent -= 1;
    this.settle(entry);
  }

  /** Recycles a retired entry's buffer once no reader, and no demotion, still uses it. */
  settle(entry: MemoryEntry): void {
    if (!entry.retired || entry.lent > 0 || entry.demoting || entry.tainted) return;
    entry.tainted = true; // given back exactly once
    this.buffers.give(entry.bytes);
  }

  /** Least recently used first. */
  lru(): IterableIterator<MemoryEntry> {
    return this.entries.values();
  }

  private insert(entry: MemoryEntry): void {
    if (this.entries.has(entry.key)) throw new Error(`memory tier: ${entry.key} is already stored`);
    if (this.usedBytes + entry.bytes.byteLength > this.capacityBytes) {
      throw new Error(`memory tier: storing ${entry.bytes.byteLength} bytes would exceed the ${this.capacityBytes}-byte budget`);
    }
    this.entries.set(entry.key, entry);
    this.stored += entry.bytes.byteLength;
  }
}
