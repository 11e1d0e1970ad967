/** Leading blocks of a chain one worker holds in its own tiers; each block counted in its fastest tier. */
export interface WorkerPrefixMatch {
  readonly blocks: number;
  readonly device: number;
  readonly host: number;
  readonly disk: number;
}

/** How a match resolves worker ids: the index's slot table, and its version (bumped when slots are freed). */
export interface SlotTable {
  slotOf(worker: string): number;
  idOf(slot: number): string | undefined;
  readonly version: number;
}

/** Per-slot result layout: blocks, device, host. */
export const STATS_PER_SLOT = 3;

/**
 * The result of `PrefixIndex.matchPrefix`: which workers hold how many leading blocks of one chain.
 * `keyOf(worker)` (or `PrefixIndex.slotsFor`) gives a key for the allocation-free readers (`blocksAt`, …).
 * Use a match before the index next forgets a worker (the Router does, synchronously); after that its
 * lookups throw rather than answer for the wrong worker.
 */
export class PrefixMatch {
  constructor(
    readonly requestedBlocks: number,
    /** Leading blocks held in tier `store` (by any trusted holder): fetchable by every worker. */
    readonly storeBlocks: number,
    /** Workers holding at least one leading block. */
    readonly size: number,
    private readonly stats: Int32Array,
    private readonly slots: SlotTable,
    private readonly version: number,
  ) {}

  /** Key of `worker` for the readers below, or −1 when it holds no leading block. */
  keyOf(worker: string): number {
    if (this.size === 0) return -1;
    if (this.slots.version !== this.version) throw new Error('stale PrefixMatch: the index forgot a worker since');
    const slot = this.slots.slotOf(worker);
    if (slot < 0 || slot * STATS_PER_SLOT >= this.stats.length || this.stats[slot * STATS_PER_SLOT] === 0) return -1;
    return slot;
  }

  // Readers accept −1 and any index slot (`PrefixIndex.slotsFor`): unmatched slots read as zero.
  blocksAt(key: number): number {
    return this.read(key, 0);
  }
  deviceAt(key: number): number {
    return this.read(key, 1);
  }
  hostAt(key: number): number {
    return this.read(key, 2);
  }
  diskAt(key: number): number {
    return this.blocksAt(key) - this.deviceAt(key) - this.hostAt(key);
  }

  /** The worker's match, or undefined when it holds no leading block. Allocates: not for hot loops. */
  get(worker: string): WorkerPrefixMatch | undefined {
    const key = this.keyOf(worker);
    return key < 0 ? undefined : this.at(key);
  }

  has(worker: string): boolean {
    return this.keyOf(worker) >= 0;
  }

  /** Every matched worker, for debugging and tests. */
  toMap(): Map<string, WorkerPrefixMatch> {
    const out = new Map<string, WorkerPrefixMatch>();
    for (let slot = 0; slot * STATS_PER_SLOT < this.stats.length; slot++) {
      const id = this.slots.idOf(slot);
      if (this.stats[slot * STATS_PER_SLOT] !== 0 && id !== undefined) out.set(id, this.at(slot));
    }
    return out;
  }

  private read(key: number, field: number): number {
    const at = key * STATS_PER_SLOT + field;
    return key < 0 || at >= this.stats.length ? 0 : this.stats[at]!;
  }

  private at(key: number): WorkerPrefixMatch {
    return { blocks: this.blocksAt(key), device: this.deviceAt(key), host: this.hostAt(key), disk: this.diskAt(key) };
  }
}
