import type { BlockTable } from './block-table';
import { LOCAL_BITS, MASK_OF_ENTRY, SLOT_SHIFT, TIER_BITS, type HolderList } from './holder-list';
import { PrefixMatch, STATS_PER_SLOT, type SlotTable } from './prefix-match';

const MAX_STEP = 0x7fffffff;

/**
 * The prefix walk behind `PrefixIndex.matchPrefix`. Owns per-slot scratch arrays so that a walk allocates
 * only its result. `mark[slot]` stamps the walk step at which a slot last advanced; steps only grow, so
 * nothing needs clearing between walks.
 */
export class PrefixWalker {
  private mark = new Int32Array(64);
  private depth = new Int32Array(64);
  private onDevice = new Int32Array(64);
  private onHost = new Int32Array(64);
  private lastMask = new Int32Array(64);
  private active = new Int32Array(64);
  private next = new Int32Array(64);
  private touched = new Int32Array(64);
  private step = 0;

  /** Makes room for slots 0..n-1. */
  ensureSlots(n: number): void {
    if (n <= this.mark.length) return;
    const size = Math.max(n, this.mark.length * 2);
    const widen = (a: Int32Array): Int32Array<ArrayBuffer> => {
      const b = new Int32Array(size);
      b.set(a);
      return b;
    };
    this.mark = widen(this.mark);
    this.depth = widen(this.depth);
    this.onDevice = widen(this.onDevice);
    this.onHost = widen(this.onHost);
    this.lastMask = widen(this.lastMask);
    this.active = widen(this.active);
    this.next = widen(this.next);
    this.touched = widen(this.touched);
  }

  /**
   * Walks `chain` once, advancing the set of slots still matching. A block whose holder list has the same
   * fingerprint as the last fully walked one advances every active slot in O(1) (credited in bulk later),
   * so a long prefix shared by every worker costs one pass over its holders, not one per block.
   * Slots with `trustedUntil[slot] <= now` are ignored.
   */
  walk(
    chain: readonly string[],
    table: BlockTable,
    trustedUntil: Float64Array,
    now: number,
    slots: SlotTable,
    slotCount: number,
  ): PrefixMatch {
    if (this.step > MAX_STEP - chain.length - 1) {
      this.step = 0;
      this.mark.fill(0);
    }
    const { mark, depth, onDevice, onHost, lastMask, touched } = this;
    let active = this.active;
    let next = this.next;
    let activeCount = 0;
    let touchedCount = 0;
    let prevStep = 0;
    let previous: HolderList | undefined;
    let previousStoreHit = false;
    let skipped = 0; // blocks advanced in O(1) since the last full pass, not yet credited per slot
    let storeRun = true;
    let storeBlocks = 0;
    let last: HolderList | undefined; // the list of block i − 1
    for (let i = 0; i < chain.length; i++) {
      const holders = table.next(last, chain[i]!);
      if (holders === undefined) break;
      last = holders;
      if (previous !== undefined && holders.sameAs(previous)) {
        skipped++;
        if (storeRun) {
          if (previousStoreHit) storeBlocks = i + 1;
          else storeRun = false;
        }
        if (activeCount === 0 && !storeRun) break;
        continue;
      }
      if (skipped > 0) this.credit(active, activeCount, skipped);
      skipped = 0;
      const step = ++this.step;
      const entries = holders.entries;
      let storeHit = false;
      let nextCount = 0;
      for (let k = 0; k < entries.length; k++) {
        const entry = entries[k]!;
        const slot = entry >>> SLOT_SHIFT;
        const mask = entry & MASK_OF_ENTRY;
        if ((mask & TIER_BITS.store) !== 0 && trustedUntil[slot]! > now) storeHit = true;
        if ((mask & LOCAL_BITS) === 0) continue;
        if (i === 0) {
          if (trustedUntil[slot]! <= now) continue;
          touched[touchedCount++] = slot;
          depth[slot] = 1;
          onDevice[slot] = (mask & TIER_BITS.device) !== 0 ? 1 : 0;
          onHost[slot] = (mask & TIER_BITS.device) === 0 && (mask & TIER_BITS.host) !== 0 ? 1 : 0;
        } else {
          if (mark[slot] !== prevStep) continue;
          depth[slot]!++;
          if ((mask & TIER_BITS.device) !== 0) onDevice[slot]!++;
          else if ((mask & TIER_BITS.host) !== 0) onHost[slot]!++;
        }
        mark[slot] = step;
        lastMask[slot] = mask;
        next[nextCount++] = slot;
      }
      [active, next] = [next, active];
      activeCount = nextCount;
      prevStep = step;
      previous = holders;
      previousStoreHit = storeHit;
      if (storeRun) {
        if (storeHit) storeBlocks = i + 1;
        else storeRun = false;
      }
      if (activeCount === 0 && !storeRun) break;
    }
    if (skipped > 0) this.credit(active, activeCount, skipped);
    this.active = active;
    this.next = next;

    const stats = new Int32Array(touchedCount === 0 ? 0 : slotCount * STATS_PER_SLOT);
    for (let k = 0; k < touchedCount; k++) {
      const slot = touched[k]!;
      const at = slot * STATS_PER_SLOT;
      stats[at] = depth[slot]!;
      stats[at + 1] = onDevice[slot]!;
      stats[at + 2] = onHost[slot]!;
    }
    return new PrefixMatch(chain.length, storeBlocks, touchedCount, stats, slots, slots.version);
  }

  /** Credits `blocks` more leading blocks to each active slot, in the tier it held the last one in. */
  private credit(active: Int32Array, count: number, blocks: number): void {
    for (let k = 0; k < count; k++) {
      const slot = active[k]!;
      this.depth[slot]! += blocks;
      const mask = this.lastMask[slot]!;
      if ((mask & TIER_BITS.device) !== 0) this.onDevice[slot]! += blocks;
      else if ((mask & TIER_BITS.host) !== 0) this.onHost[slot]! += blocks;
    }
  }
}
