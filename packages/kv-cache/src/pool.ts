import type { BlockHash } from './hash';
import { blockBytes, blockFloats, type KvLayout } from './layout';

export type BlockId = number;

export interface KvCacheEvent {
  readonly kind: 'stored' | 'removed';
  readonly hash: BlockHash;
}

/** Floats in one 4 KiB page: the stride at which BlockPool writes its memory once, at start. */
const PAGE_FLOATS = 1024;

/**
 * Fixed-size KV blocks in one preallocated SharedArrayBuffer (so a model thread can read and write
 * them in place), with reference counts and a prefix cache from block hash to block. A block whose
 * last reference goes keeps its hash and stays reusable until it is evicted, least-recently-used first.
 *
 * The whole buffer is written once when the pool is made (one word a page), so that the OS backs it
 * then and not at some request's first use of a block: a page's first write is a fault that zeroes it,
 * and a huge page's on a VM here took ≈ 5 ms (a decode worker importing a prompt's last block spent
 * 8 ms in one such fault, between the first token and the second). The pool's RSS is its size from the
 * start, and a host that cannot back it shows it then.
 */
export class BlockPool {
  readonly data: Float32Array;
  readonly blockFloats: number;
  private readonly refCount: Int32Array;
  private readonly hashOf: (BlockHash | undefined)[];
  private readonly hashToBlock = new Map<BlockHash, BlockId>();
  /** Free blocks that hold nothing reusable: taken first. */
  private readonly freeEmpty: BlockId[] = [];
  /** Free blocks that still hold a cached prefix, oldest first (Map keeps insertion order). */
  private readonly freeCached = new Map<BlockId, true>();
  private listener: ((e: KvCacheEvent) => void) | undefined;
  private evictListener: ((id: BlockId, hash: BlockHash) => void) | undefined;

  constructor(
    readonly layout: KvLayout,
    readonly numBlocks: number,
  ) {
    if (!Number.isInteger(numBlocks) || numBlocks < 1) throw new Error(`KV pool needs at least one block, got ${numBlocks}`);
    this.blockFloats = blockFloats(layout);
    this.data = new Float32Array(new SharedArrayBuffer(numBlocks * this.blockFloats * 4));
    for (let i = 0; i < this.data.length; i += PAGE_FLOATS) this.data[i] = 0;
    this.refCount = new Int32Array(numBlocks);
    this.hashOf = new Array<BlockHash | undefined>(numBlocks).fill(undefined);
    for (let id = numBlocks - 1; id >= 0; id--) this.freeEmpty.push(id);
  }

  /** As many blocks as fit in `bytes`. */
  static fromBudget(layout: KvLayout, bytes: number): BlockPool {
    const n = Math.floor(bytes / blockBytes(layout));
    if (n < 1) throw new Error(`--kv-cache-bytes ${bytes} holds no block (a block is ${blockBytes(layout)} bytes)`);
    return new BlockPool(layout, n);
  }

  /** Receives 'stored' when a full block enters the prefix cache and 'removed' when it is evicted. */
  onEvent(listener: ((e: KvCacheEvent) => void) | undefined): void {
    this.listener = listener;
  }

  /**
   * Told when a cached block is about to lose its prefix (evicted for reuse), while its bytes are still
   * intact: the last moment to copy them out (e.g. to offload them to a kv-store). Must not touch the pool.
   */
  onEvict(listener: ((id: BlockId, hash: BlockHash) => void) | undefined): void {
    this.evictListener = listener;
  }

  get numFree(): number {
    return this.freeEmpty.length + this.freeCached.size;
  }
  /** Free blocks that still hold a reusable prefix. */
  get numCached(): number {
    return this.freeCached.size;
  }
  get numUsed(): number {
    return this.numBlocks - this.numFree;
  }

  has(hash: BlockHash): boolean {
    return this.hashToBlock.has(hash);
  }

  /** Takes a reference on the block holding `hash`, reviving it from the free list if needed. */
  acquireCached(hash: BlockHash): BlockId | undefined {
    const id = this.hashToBlock.get(hash);
    if (id === undefined) return undefined;
    if (this.refCount[id] === 0) this.freeCached.delete(id);
    this.refCount[id]! += 1;
    return id;
  }

  /** A fresh block with one reference, evicting the least-recently-used cached block if needed. */
  allocate(): BlockId | undefined {
    let id = this.freeEmpty.pop();
    if (id === undefined) {
      const oldest = this.freeCached.keys().next();
      if (oldest.done) return undefined;
      id = oldest.value;
      this.freeCached.delete(id);
      const hash = this.hashOf[id];
      if (hash !== undefined) this.evictListener?.(id, hash);
      this.forget(id);
    }
    this.refCount[id] = 1;
    return id;
  }

  /** Drops one reference; at zero the block joins the free list (keeping its cached prefix, if any). */
  release(id: BlockId): void {
    const rc = this.refCount[id]!;
    if (rc <= 0) throw new Error(`block ${id} released with no reference`);
    this.refCount[id] = rc - 1;
    if (rc > 1) return;
    if (this.hashOf[id] !== undefined) this.freeCached.set(id, true);
    else this.freeEmpty.push(id);
  }

  /** Registers a full block under its chained hash so later prompts can reuse it. */
  publish(id: BlockId, hash: BlockHash): void {
    if (this.hashOf[id] !== undefined || this.hashToBlock.has(hash)) return;
    this.hashOf[id] = hash;
    this.hashToBlock.set(hash, id);
    this.listener?.({ kind: 'stored', hash });
  }

  hashOfBlock(id: BlockId): BlockHash | undefined {
    return this.hashOf[id];
  }

  refCountOf(id: BlockId): number {
    return this.refCount[id]!;
  }

  /** Hashes of every block in the prefix cache (used or free): the snapshot a gateway resyncs from. */
  cachedHashes(): BlockHash[] {
    return [...this.hashToBlock.keys()];
  }

  /** Evicts every free cached block (tests, and `reset prefix cache`). */
  evictFree(): void {
    for (const id of this.freeCached.keys()) {
      const hash = this.hashOf[id];
      if (hash !== undefined) this.evictListener?.(id, hash);
      this.forget(id);
      this.freeEmpty.push(id);
    }
    this.freeCached.clear();
  }

  /** The block's floats, in place. */
  view(id: BlockId): Float32Array {
    return this.data.subarray(id * this.blockFloats, (id + 1) * this.blockFloats);
  }

  /** The block's bytes, in place (for export without a copy). */
  bytes(id: BlockId): Uint8Array {
    return new Uint8Array(this.data.buffer, id * this.blockFloats * 4, this.blockFloats * 4);
  }

  private forget(id: BlockId): void {
    const hash = this.hashOf[id];
    if (hash === undefined) return;
    this.hashOf[id] = undefined;
    this.hashToBlock.delete(hash);
    this.listener?.({ kind: 'removed', hash });
  }
}
