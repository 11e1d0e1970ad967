/**
 * A prefix cache of blocks (by trace hash id) with a capacity in blocks, evicting least recently used.
 * A Map keeps insertion order, so "touch" is delete + set and the oldest block is the first key.
 */
export class BlockLru {
  private readonly blocks = new Map<number, true>();

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.blocks.size;
  }

  has(id: number): boolean {
    return this.blocks.has(id);
  }

  /** Leading blocks of `ids` held, from `from`; touches them (a hit is a use) when `touch`. */
  leading(ids: readonly number[], from = 0, touch = true): number {
    let n = 0;
    for (let i = from; i < ids.length; i++) {
      const id = ids[i]!;
      if (!this.blocks.has(id)) break;
      if (touch) {
        this.blocks.delete(id);
        this.blocks.set(id, true);
      }
      n++;
    }
    return n;
  }

  /**
   * Inserts or touches a prompt's blocks, last block first, so that the tail of a prefix is evicted before its
   * head (as the engine frees a finished sequence's blocks); returns the newly stored ids (in prompt order)
   * and the evicted ones.
   */
  insert(ids: readonly number[]): { readonly stored: number[]; readonly evicted: number[] } {
    const stored: number[] = [];
    const evicted: number[] = [];
    for (let i = ids.length - 1; i >= 0; i--) {
      const id = ids[i]!;
      if (this.blocks.delete(id)) this.blocks.set(id, true);
      else {
        this.blocks.set(id, true);
        stored.push(id);
      }
    }
    stored.reverse();
    while (this.blocks.size > this.capacity) {
      const oldest = this.blocks.keys().next().value as number;
      this.blocks.delete(oldest);
      evicted.push(oldest);
    }
    return { stored, evicted };
  }
}
