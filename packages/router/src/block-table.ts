import { HolderList, entryOf } from './holder-list';

/**
 * Storage of the prefix index: block hash → holder list, and per holder the reverse map (hash → tier mask)
 * so that a holder can be dropped without scanning every block. No protocol or trust here.
 */
export class BlockTable {
  private readonly byHash = new Map<string, HolderList>();

  get(hash: string): HolderList | undefined {
    return this.byHash.get(hash);
  }

  /** Distinct block hashes held by anyone. */
  get size(): number {
    return this.byHash.size;
  }

  /** Records that the holder in `slot` (whose reverse map is `held`) holds `hash` in tier `bit`. */
  add(slot: number, held: Map<string, number>, hash: string, bit: number): void {
    const old = held.get(hash) ?? 0;
    if ((old & bit) !== 0) return;
    const mask = old | bit;
    held.set(hash, mask);
    let list = this.byHash.get(hash);
    if (list === undefined) {
      list = new HolderList();
      this.byHash.set(hash, list);
    }
    if (old === 0) list.add(entryOf(slot, mask));
    else list.replaceAt(list.indexOfSlot(slot), entryOf(slot, mask));
  }

  remove(slot: number, held: Map<string, number>, hash: string, bit: number): void {
    const old = held.get(hash);
    if (old === undefined || (old & bit) === 0) return;
    const mask = old & ~bit;
    const list = this.byHash.get(hash)!;
    const at = list.indexOfSlot(slot);
    if (mask !== 0) {
      held.set(hash, mask);
      list.replaceAt(at, entryOf(slot, mask));
      return;
    }
    held.delete(hash);
    list.removeAt(at);
    if (list.entries.length === 0) this.forget(hash, list);
  }

  /** Forgets everything the holder in `slot` holds. */
  drop(slot: number, held: Map<string, number>): void {
    for (const hash of held.keys()) {
      const list = this.byHash.get(hash)!;
      list.removeAt(list.indexOfSlot(slot));
      if (list.entries.length === 0) this.forget(hash, list);
    }
    held.clear();
  }

  /** The list of `hash`, found through `previous`'s successor pointer when it is still valid. */
  next(previous: HolderList | undefined, hash: string): HolderList | undefined {
    if (previous !== undefined && previous.successorHash === hash && !previous.successor!.dead) return previous.successor;
    const list = this.byHash.get(hash);
    if (previous !== undefined && list !== undefined) {
      previous.successorHash = hash;
      previous.successor = list;
    }
    return list;
  }

  private forget(hash: string, list: HolderList): void {
    this.byHash.delete(hash);
    list.dead = true;
    list.successor = undefined;
    list.successorHash = undefined;
  }
}
