import { mix32 } from './rng';

/** Holder entries are packed as slot × 16 + tier mask in one small integer. */
export const SLOT_SHIFT = 4;
export const MASK_OF_ENTRY = 15;
export const TIER_BITS = { device: 1, host: 2, disk: 4, store: 8 } as const;
export const LOCAL_BITS = TIER_BITS.device | TIER_BITS.host | TIER_BITS.disk;

export function entryOf(slot: number, mask: number): number {
  return slot * (1 << SLOT_SHIFT) + mask;
}

/**
 * Who holds one block: packed (slot, tier mask) entries in no particular order, plus a 64-bit
 * order-independent fingerprint of the entries (two XOR-folded 32-bit mixes). Consecutive chain blocks with
 * equal fingerprints have the same holders in the same tiers, which lets `matchPrefix` skip them in O(1).
 */
export class HolderList {
  fp0 = 0;
  fp1 = 0;
  readonly entries: number[] = [];
  /** Set when the table drops this list (no holder left); a later list for the same hash is a new object. */
  dead = false;
  /**
   * The block that last followed this one in a walked chain, and its list: a walk that meets the same
   * successor again follows the pointer instead of a lookup in the (large, cache-cold) hash table.
   */
  successorHash: string | undefined = undefined;
  successor: HolderList | undefined = undefined;

  add(entry: number): void {
    this.entries.push(entry);
    this.toggle(entry);
  }

  indexOfSlot(slot: number): number {
    const entries = this.entries;
    for (let i = 0; i < entries.length; i++) if (entries[i]! >>> SLOT_SHIFT === slot) return i;
    throw new Error(`prefix index corrupt: slot ${slot} missing from a holder list`);
  }

  replaceAt(at: number, entry: number): void {
    this.toggle(this.entries[at]!);
    this.entries[at] = entry;
    this.toggle(entry);
  }

  /** Order does not matter, so removal swaps in the last entry. */
  removeAt(at: number): void {
    this.toggle(this.entries[at]!);
    const last = this.entries.pop()!;
    if (at < this.entries.length) this.entries[at] = last;
  }

  sameAs(other: HolderList): boolean {
    return this.fp0 === other.fp0 && this.fp1 === other.fp1 && this.entries.length === other.entries.length;
  }

  private toggle(entry: number): void {
    this.fp0 ^= mix32(entry);
    this.fp1 ^= mix32(entry ^ 0x5bd1e995);
  }
}
