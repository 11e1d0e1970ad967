// Makes room in the memory tier: LRU blocks that no lease protects are demoted to the disk tier (or dropped
// when there is none, or it cannot take them). Puts wait here for room; watermarks trigger it in the background.
import type { Logger } from '@pdserve/control-plane';
import { crc32 } from '@pdserve/kv-cache';
import type { DiskEntry, DiskTier, EvictionGuard } from './disk-tier';
import { KvStoreError } from './errors';
import type { EventHub } from './events';
import type { BlockKey } from './keys';
import type { MemoryEntry, MemoryTier } from './memory-tier';
import { Mutex } from './mutex';
import type { StoreCounters } from './stats';

export interface EvictorDeps {
  readonly memory: MemoryTier;
  readonly disk: DiskTier | undefined;
  readonly guard: EvictionGuard;
  readonly counters: StoreCounters;
  readonly events: EventHub;
  readonly logger: Logger;
  /** Fractions of the memory budget (see KvStoreOptions). */
  readonly highWatermark: number;
  readonly lowWatermark: number;
  /** Called before victims are chosen, so that lapsed leases stop protecting blocks. */
  readonly refresh: () => void;
  /** A block left every tier. */
  readonly gone: (key: BlockKey) => void;
}

export class Evictor {
  /** Demotions under way; they never reject. */
  private readonly inFlight = new Set<Promise<void>>();
  /** Memory bytes that demotions under way will free (unless a read leases the block meanwhile). */
  private demotingBytes = 0;
  /** Puts wait for room one at a time, first come first served. */
  private readonly reserving = new Mutex();
  private background: Promise<void> | undefined;

  constructor(private readonly d: EvictorDeps) {}

  /** Reserves `bytes` of the memory budget, demoting LRU blocks first if needed. */
  reserve(bytes: number): Promise<void> {
    const { memory } = this.d;
    return this.reserving.run(async () => {
      for (;;) {
        this.d.refresh();
        if (memory.tryReserve(bytes)) return;
        const deficit = bytes - memory.freeBytes - this.demotingBytes;
        if (deficit > 0) this.evict(deficit, this.d.guard.evictPinned);
        if (memory.tryReserve(bytes)) return;
        if (this.inFlight.size === 0) {
          throw new KvStoreError(
            'resource_exhausted',
            `memory tier cannot make room for ${bytes} bytes: ${memory.usedBytes} of ${memory.capacityBytes} bytes are in use ` +
              `(${memory.reservedBytes} reserved by pending puts, the rest held by read leases${this.d.guard.evictPinned ? '' : ' or pins'})`,
          );
        }
        await Promise.race(this.inFlight);
      }
    });
  }

  /** After memory usage grew: past the high watermark, demote in the background down to the low one. */
  afterGrowth(): void {
    const { memory } = this.d;
    if (this.background !== undefined || memory.usedBytes <= this.d.highWatermark * memory.capacityBytes) return;
    this.background = this.drainToLowWatermark()
      .catch((error: unknown) => this.d.logger.error({ err: String(error) }, 'kv-store: background eviction failed'))
      .finally(() => (this.background = undefined));
  }

  /** Resolves when no eviction is running. */
  async idle(): Promise<void> {
    while (this.background !== undefined || this.inFlight.size > 0) {
      await Promise.all([this.background, ...this.inFlight]);
    }
  }

  /** Copies every memory block that is not on disk yet to disk (for a planned shutdown); memory keeps them. */
  async copyAllToDisk(): Promise<void> {
    const { disk, memory } = this.d;
    if (disk === undefined) return;
    for (const entry of [...memory.lru()]) {
      if (disk.has(entry.key) || memory.get(entry.key) !== entry || crc32(entry.bytes) !== entry.crc) continue;
      await this.writeToDisk(entry);
    }
  }

  private async drainToLowWatermark(): Promise<void> {
    const { memory } = this.d;
    for (;;) {
      this.d.refresh();
      const excess = memory.usedBytes - this.demotingBytes - this.d.lowWatermark * memory.capacityBytes;
      if (excess > 0) this.evict(excess, false);
      if (this.inFlight.size === 0) return;
      await Promise.race(this.inFlight);
    }
  }

  /** Starts demoting LRU blocks worth at least `bytes` (fewer if not enough are evictable). */
  private evict(bytes: number, allowPinned: boolean): void {
    const { memory, guard } = this.d;
    const victims: MemoryEntry[] = [];
    let chosen = 0;
    for (const pinnedPass of allowPinned ? [false, true] : [false]) {
      for (const entry of memory.lru()) {
        if (chosen >= bytes) break;
        if (entry.demoting || guard.isLeased(entry.key) || guard.isPinned(entry.key) !== pinnedPass) continue;
        victims.push(entry);
        chosen += entry.bytes.byteLength;
      }
    }
    for (const entry of victims) this.startDemotion(entry);
  }

  private startDemotion(entry: MemoryEntry): void {
    const { disk } = this.d;
    if (crc32(entry.bytes) !== entry.crc) {
      this.dropFromMemory(entry, 'corrupt');
      return;
    }
    if (disk === undefined || disk.has(entry.key)) {
      this.dropFromMemory(entry, 'evicted');
      return;
    }
    const size = entry.bytes.byteLength;
    entry.demoting = true;
    this.demotingBytes += size;
    const done: Promise<void> = this.demote(entry)
      .catch((error: unknown) => this.d.logger.error({ err: String(error), block: entry.key }, 'kv-store: demotion failed'))
      .finally(() => {
        entry.demoting = false;
        this.d.memory.settle(entry); // dropped from memory meanwhile: now its buffer can be reused
        this.demotingBytes -= size;
        this.inFlight.delete(done);
      });
    this.inFlight.add(done);
  }

  private async demote(entry: MemoryEntry): Promise<void> {
    await this.writeToDisk(entry);
    if (this.d.memory.get(entry.key) !== entry) return; // removed (or dropped as corrupt) meanwhile
    if (this.d.guard.isLeased(entry.key)) return; // a reader holds it: it stays, and a later eviction just drops it
    this.dropFromMemory(entry, 'evicted');
  }

  private async writeToDisk(entry: MemoryEntry): Promise<void> {
    const { disk, counters, events, memory } = this.d;
    if (disk === undefined) return;
    const result = await disk.write(entry.modelId, entry.hash, entry.bytes, entry.crc);
    this.reportDiskEvictions(result.evicted);
    if (result.outcome !== 'written') return;
    if (memory.get(entry.key) !== entry) {
      // Removed while the file was being written: the file must not bring it back.
      await disk.remove(entry.key);
      return;
    }
    const written = disk.get(entry.key);
    counters.disk.writeBytes += written?.fileBytes ?? 0;
    counters.demotions += 1;
    events.emit('stored', 'disk', [entry]);
  }

  private reportDiskEvictions(evicted: readonly DiskEntry[]): void {
    if (evicted.length === 0) return;
    this.d.counters.disk.evictions += evicted.length;
    this.d.events.emit('removed', 'disk', evicted);
    for (const e of evicted) if (!this.d.memory.has(e.key)) this.d.gone(e.key);
  }

  private dropFromMemory(entry: MemoryEntry, why: 'evicted' | 'corrupt'): void {
    const { memory, counters, events, disk } = this.d;
    if (memory.get(entry.key) !== entry) return;
    memory.delete(entry.key);
    if (why === 'corrupt') counters.memory.corruptDropped += 1;
    else counters.memory.evictions += 1;
    events.emit('removed', 'memory', [entry]);
    if (disk?.has(entry.key) !== true) this.d.gone(entry.key);
  }
}
