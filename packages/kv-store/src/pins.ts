// Soft pins: LRU eviction passes over a pinned block until its pin lapses (see evictPinnedWhenFull).
import type { BlockKey } from './keys';

export class PinTable {
  private readonly until = new Map<BlockKey, number>();

  get size(): number {
    return this.until.size;
  }

  /** Pins never shorten: a second pin only extends. */
  pin(key: BlockKey, until: number): void {
    this.until.set(key, Math.max(until, this.until.get(key) ?? 0));
  }

  isPinned(key: BlockKey, now: number): boolean {
    const until = this.until.get(key);
    return until !== undefined && until > now;
  }

  forget(key: BlockKey): void {
    this.until.delete(key);
  }

  sweep(now: number): void {
    for (const [key, until] of this.until) if (until <= now) this.until.delete(key);
  }
}
