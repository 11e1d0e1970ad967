// The memory tier: committed blocks in LRU order, and a byte budget shared with reservations for puts.
import type { BlockHash, BlockKey } from './keys.js';

export interface MemoryEntry {
  readonly key: BlockKey;
  readonly modelId: string;
  readonly hash: BlockHash;
  readonly bytes: Uint8Array;
  /** crc32 of all of `bytes`, taken when the store received them; every read re-checks it. */
  readonly crc: number;
  /** Being copied to disk by eviction: not picked again. */
  demoting: boolean;
}

export class MemoryTier {
  /** Oldest first: a Map iterates in insertion order, and touch() re-inserts. */
  private readonly entries = new Map<BlockKey, MemoryEntry>();
  private stored = 0;
  private reserved = 0;

  constructor(readonly capacityBytes: number) {}

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
    return entry;
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
