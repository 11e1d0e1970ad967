// KvStore: one kv-store node's block store. Two-phase puts into a budgeted memory tier, leased reads, LRU
// demotion into a budgeted disk tier, soft pins, and events for routers. Each public method maps to one RPC.
import { blockHeaderNames, crc32 } from '@pdserve/kv-cache';
import { DiskTier, type DiskEntry, type DiskOpenReport, type EvictionGuard } from './disk-tier';
import { KvStoreError, invalidArgument } from './errors';
import { EventHub, blockEvents, type KvStoreListener } from './events';
import { Evictor } from './evictor';
import { inspectBlock } from './inspect-block';
import { blockKey, checkHash, type BlockHash, type BlockKey } from './keys';
import { LeaseTable } from './leases';
import { MemoryTier, memoryEntry, type MemoryEntry } from './memory-tier';
import { resolveOptions, type KvStoreConfig, type KvStoreOptions } from './options';
import { PinTable } from './pins';
import { PutTable, type PendingBlock, type PendingPut } from './put-table';
import { RequestChecks } from './requests';
import { StoreCounters, type TierCounters } from './stats';
import type {
  BeginPutOptions,
  BeginPutResult,
  CommitResult,
  FoundBlock,
  GetOptions,
  GetResult,
  KvStoreEvent,
  KvStoreStats,
  PinResult,
  PrefixResult,
  PutEntry,
  RemoveResult,
  StoreTier,
  TierStats,
} from './types';

export interface CloseOptions {
  /** Copy every memory block to the disk tier first, so that a restart finds it there. */
  readonly flushToDisk?: boolean;
}

export class KvStore {
  private readonly memory: MemoryTier;
  private readonly puts = new PutTable();
  private readonly counters = new StoreCounters();
  private readonly events: EventHub;
  private readonly evictor: Evictor;
  private readonly check: RequestChecks;
  private readonly sweeper: NodeJS.Timeout;
  /** Memory blocks whose bytes a read lease lent out (their buffers are not reused until it ends). */
  private readonly lent = new Map<string, MemoryEntry[]>();
  private closed = false;

  private constructor(
    private readonly c: KvStoreConfig,
    private readonly leases: LeaseTable,
    private readonly pins: PinTable,
    guard: EvictionGuard,
    private readonly disk: DiskTier | undefined,
    openReport: DiskOpenReport,
  ) {
    this.memory = new MemoryTier(c.memoryBytes);
    this.events = new EventHub(c.logger);
    this.check = new RequestChecks(c);
    this.counters.disk.corruptDropped = openReport.discarded;
    this.counters.disk.evictions = openReport.trimmed;
    this.evictor = new Evictor({
      memory: this.memory,
      disk,
      guard,
      counters: this.counters,
      events: this.events,
      logger: c.logger,
      highWatermark: c.highWatermark,
      lowWatermark: c.lowWatermark,
      refresh: () => leases.sweep(c.clock()),
      gone: (key) => pins.forget(key),
    });
    this.sweeper = setInterval(() => this.sweep(), c.sweepIntervalMs);
    this.sweeper.unref();
  }

  /** Opens a store; with a disk folder that already holds blocks, the disk index is rebuilt from it. */
  static async open(options: KvStoreOptions): Promise<KvStore> {
    const c = resolveOptions(options);
    let lapsed = (_leaseId: string): void => undefined;
    const leases = new LeaseTable((id) => lapsed(id));
    const pins = new PinTable();
    const guard: EvictionGuard = {
      isLeased: (key) => leases.isLeased(key),
      isPinned: (key) => pins.isPinned(key, c.clock()),
      evictPinned: c.evictPinnedWhenFull,
    };
    let disk: DiskTier | undefined;
    let report: DiskOpenReport = { discarded: 0, trimmed: 0 };
    if (c.diskDir !== undefined) {
      const opened = await DiskTier.open({
        dir: c.diskDir,
        capacityBytes: c.diskBytes,
        fsync: c.diskFsync,
        verifyOnOpen: c.verifyDiskOnOpen,
        guard,
        logger: c.logger,
      });
      disk = opened.tier;
      report = opened.report;
    }
    const store = new KvStore(c, leases, pins, guard, disk, report);
    lapsed = (id) => store.endLending(id, true);
    return store;
  }

  /** Subscribes to stored/removed events; returns the unsubscribe function. */
  onEvent(listener: KvStoreListener): () => void {
    return this.events.on(listener);
  }

  /**
   * Phase one of a put: validates the entries and reserves memory for the blocks the store does not hold yet,
   * demoting LRU blocks if needed (resource_exhausted when that cannot make room). Blocks already held are
   * leased until the put ends, so that the commit can rely on them.
   */
  async beginPut(modelId: string, entries: readonly PutEntry[], options: BeginPutOptions = {}): Promise<BeginPutResult> {
    this.assertOpen();
    const layout = this.check.model(modelId);
    this.check.putEntries(entries, layout);
    const ttlMs = this.check.duration('ttlMs', options.ttlMs, this.c.putTtlMs, this.c.maxPutTtlMs);
    const expiresAt = this.c.clock() + ttlMs;
    const blocks = new Map<BlockHash, PendingBlock>();
    const alreadyStored: BlockHash[] = [];
    let reservedBytes = 0;
    for (const { hash, size } of entries) {
      const key = blockKey(modelId, hash); // made once: its hash code is cached on it for every later lookup
      const stored = this.tierOf(key) !== undefined;
      blocks.set(hash, { key, size, alreadyStored: stored, bytes: undefined, crc: 0, target: undefined });
      if (stored) alreadyStored.push(hash);
      else reservedBytes += size;
    }
    if (reservedBytes > this.memory.capacityBytes) {
      throw new KvStoreError(
        'resource_exhausted',
        `put needs ${reservedBytes} bytes but the memory tier holds only ${this.memory.capacityBytes}`,
      );
    }
    const leaseId =
      alreadyStored.length === 0
        ? undefined
        : this.leases.acquire(
            alreadyStored.map((h) => blockKey(modelId, h)),
            expiresAt,
          );
    try {
      if (reservedBytes > 0) await this.evictor.reserve(reservedBytes);
    } catch (error) {
      if (leaseId !== undefined) this.leases.release(leaseId);
      throw error;
    }
    if (this.closed || this.c.clock() >= expiresAt) {
      this.memory.unreserve(reservedBytes);
      if (leaseId !== undefined) this.leases.release(leaseId);
      if (this.closed) throw new KvStoreError('unavailable', 'the kv-store is closed');
      throw new KvStoreError('resource_exhausted', `no room for the put within its ${ttlMs} ms ttl`);
    }
    const put = this.puts.add({ modelId, blocks, reservedBytes, leaseId, expiresAt });
    return { putId: put.id, alreadyStored, reservedBytes, expiresAt };
  }

  /**
   * Where an incoming transfer for an open put may read its blocks: a buffer of the store's own per block
   * (out of the put's reservation), so that writeBlock keeps the bytes without copying them. Undefined —
   * read elsewhere and copied in — unless every block is one the put still awaits, of the declared size,
   * and not placed before (a second transfer for the same put never shares a first one's buffers).
   */
  placement(putId: string, blocks: readonly { readonly hash: string; readonly length: number }[]): Uint8Array[] | undefined {
    const put = this.puts.get(putId);
    if (this.closed || put === undefined || this.c.clock() >= put.expiresAt) return undefined;
    const pending = new Set<PendingBlock>();
    for (const { hash, length } of blocks) {
      const b = put.blocks.get(hash);
      if (b === undefined || b.alreadyStored || b.bytes !== undefined || b.target !== undefined || b.size !== length || pending.has(b))
        return undefined;
      pending.add(b);
    }
    const list = [...pending];
    if (list.length === 0) return [];
    const uniform = list.every((b) => b.size === list[0]!.size);
    const bufs = uniform ? this.memory.buffers.takeRun(list[0]!.size, list.length) : list.map((b) => this.memory.buffers.take(b.size));
    list.forEach((b, i) => (b.target = bufs[i]));
    return bufs;
  }

  /**
   * Phase two: one block's bytes. They are checked (codec header, shape, checksum, the hash in the header)
   * and kept — copied, unless they are in the buffer placement() gave for them; a bad block is refused and
   * nothing of it is kept. Writing an already-stored block is a no-op.
   * `verifiedCrc`: the CRC-32 of `bytes`, already checked against them (the transfer engine did); it spares
   * two passes over the bytes (the header's payload CRC is checked against it, and it is kept as the block's).
   */
  writeBlock(putId: string, hash: BlockHash, bytes: Uint8Array, verifiedCrc?: number): void {
    this.assertOpen();
    const put = this.livePut(putId);
    checkHash(hash);
    const block = put.blocks.get(hash);
    if (block === undefined) throw invalidArgument(`block ${hash} is not part of put ${putId}`);
    if (!(bytes instanceof Uint8Array)) throw invalidArgument(`block ${hash}: bytes must be a Uint8Array`);
    if (bytes.byteLength !== block.size) {
      throw invalidArgument(`block ${hash} is ${bytes.byteLength} bytes, but the put declared ${block.size}`);
    }
    const info = inspectBlock(bytes, this.c.models?.get(put.modelId), verifiedCrc);
    if (!blockHeaderNames(bytes, hash)) throw invalidArgument(`block header names hash ${info.hash}, not ${hash}`);
    if (block.alreadyStored) return;
    let own = bytes; // read straight into the store's buffer (placement)
    if (bytes !== block.target) {
      own = this.memory.buffers.take(bytes.byteLength); // a copy: the caller's buffer may be a view into a larger one
      own.set(bytes);
    }
    block.bytes = own;
    block.crc = verifiedCrc ?? crc32(own);
  }

  /**
   * Phase three: all blocks of the put become readable at once (all-or-nothing). With a block not written
   * yet, it fails (failed_precondition) and the put stays open for the missing writes. If a block that was
   * already stored at beginPut has since been dropped as corrupt, it fails and the put is revoked.
   */
  commitPut(putId: string): CommitResult {
    this.assertOpen();
    const put = this.livePut(putId);
    const unwritten: BlockHash[] = [];
    const vanished: BlockHash[] = [];
    for (const [hash, b] of put.blocks) {
      if (b.bytes !== undefined) continue;
      if (!b.alreadyStored) unwritten.push(hash);
      else if (this.tierOf(b.key) === undefined) vanished.push(hash);
    }
    if (unwritten.length > 0) {
      throw new KvStoreError(
        'failed_precondition',
        `put ${putId} cannot commit: ${unwritten.length} of ${put.blocks.size} blocks not written (${unwritten.slice(0, 4).join(', ')}${unwritten.length > 4 ? ', …' : ''})`,
      );
    }
    if (vanished.length > 0) {
      this.endPut(put);
      this.counters.revokedPuts += 1;
      throw new KvStoreError(
        'failed_precondition',
        `put ${putId} revoked: blocks ${vanished.join(', ')} were dropped as corrupt after beginPut; begin a new put`,
      );
    }
    this.puts.delete(put.id);
    if (put.leaseId !== undefined) this.leases.release(put.leaseId);
    const stored: MemoryEntry[] = [];
    const alreadyStored: BlockHash[] = [];
    for (const [hash, b] of put.blocks) {
      const key = b.key;
      if (b.bytes === undefined || this.tierOf(key) !== undefined) {
        if (b.bytes !== undefined) this.memory.unreserve(b.size); // committed meanwhile by another put
        alreadyStored.push(hash);
        continue;
      }
      const entry = memoryEntry(key, put.modelId, hash, b.bytes, b.crc);
      this.memory.insertReserved(entry);
      this.counters.memory.writeBytes += b.size;
      stored.push(entry);
    }
    this.counters.committedPuts += 1;
    this.events.emit('stored', 'memory', stored);
    this.evictor.afterGrowth();
    return { stored: stored.map((e) => e.hash), alreadyStored };
  }

  /** Abandons a put: its reservation and bytes go. False when the put was not open (already ended). */
  revokePut(putId: string): boolean {
    const put = this.puts.get(putId);
    if (put === undefined) return false;
    this.endPut(put);
    this.counters.revokedPuts += 1;
    return true;
  }

  /**
   * Reads blocks, each verified against its checksum (a corrupt one is dropped and reported missing, never
   * served), under one read lease that keeps them from eviction and removal until released or lapsed. Disk
   * hits are read back and promoted to memory when that keeps memory under its high watermark.
   */
  async get(modelId: string, hashes: readonly BlockHash[], options: GetOptions = {}): Promise<GetResult> {
    this.assertOpen();
    this.check.model(modelId);
    this.check.hashes(hashes, 'get');
    const leaseMs = this.check.duration('leaseMs', options.leaseMs, this.c.leaseMs, this.c.maxLeaseMs);
    const verifyMemory = options.verifyMemory ?? true;
    const now = this.c.clock();
    this.leases.sweep(now);
    const blocks: (FoundBlock | undefined)[] = hashes.map(() => undefined);
    const leased: BlockKey[] = [];
    const lent: MemoryEntry[] = [];
    const diskReads: { index: number; entry: DiskEntry }[] = [];
    const { memory: mc, disk: dc } = this.counters;
    hashes.forEach((hash, index) => {
      const key = blockKey(modelId, hash);
      const mem = this.memory.get(key);
      if (mem !== undefined && (!verifyMemory || this.verifyMemory(mem))) {
        this.memory.touch(mem);
        blocks[index] = { bytes: mem.bytes, tier: 'memory', crc: mem.crc };
        this.memory.lend(mem); // at once: its buffer must not be reused while this reader may hold it
        lent.push(mem);
        leased.push(key);
        mc.hits += 1;
        mc.readBytes += mem.bytes.byteLength;
        return;
      }
      mc.misses += 1;
      const onDisk = this.disk?.get(key);
      if (onDisk === undefined) {
        dc.misses += 1;
        return;
      }
      diskReads.push({ index, entry: onDisk });
      leased.push(key); // leased before the read starts, so that eviction cannot delete the file under it
    });
    const leaseId = leased.length === 0 ? undefined : this.leases.acquire(leased, now + leaseMs);
    await Promise.all(
      diskReads.map(async ({ index, entry }) => {
        const bytes = await this.readDisk(entry);
        if (bytes === undefined) {
          if (leaseId !== undefined) this.leases.drop(leaseId, entry.key);
          return;
        }
        blocks[index] = { bytes, tier: 'disk', crc: entry.blockCrc };
        // Promoted: the memory entry shares the bytes just read, which this reader now holds.
        const promoted = this.memory.get(entry.key);
        if (promoted?.bytes === bytes) {
          this.memory.lend(promoted);
          lent.push(promoted);
        }
      }),
    );
    if (leaseId !== undefined && lent.length > 0) this.lent.set(leaseId, lent);
    return { leaseId, leaseExpiresAt: now + leaseMs, blocks };
  }

  /**
   * A reader found blocks that did not match their CRC (a get with verifyMemory false): each of these the
   * memory tier holds is checked now, and dropped if corrupt. Returns the hashes dropped.
   */
  recheck(modelId: string, hashes: readonly BlockHash[]): BlockHash[] {
    this.check.model(modelId);
    this.check.hashes(hashes, 'recheck');
    const dropped: BlockHash[] = [];
    for (const hash of hashes) {
      const mem = this.memory.get(blockKey(modelId, hash));
      if (mem !== undefined && !this.verifyMemory(mem)) dropped.push(hash);
    }
    return dropped;
  }

  /** Ends a read lease early: the reader is done with the bytes. False when it had already ended (released or lapsed). */
  releaseLease(leaseId: string): boolean {
    const released = this.leases.release(leaseId);
    this.endLending(leaseId, false);
    if (released) this.evictor.afterGrowth();
    return released;
  }

  /**
   * A read lease ended. Released, its reader is done: the blocks' buffers may be reused once they leave
   * memory. Lapsed, the reader may still hold the bytes: those buffers are never reused.
   */
  private endLending(leaseId: string, lapsed: boolean): void {
    const entries = this.lent.get(leaseId);
    if (entries === undefined) return;
    this.lent.delete(leaseId);
    for (const e of entries) {
      if (lapsed) e.tainted = true;
      this.memory.giveBack(e);
    }
  }

  /** The best tier holding each block, or undefined. Does not count as a read. */
  exists(modelId: string, hashes: readonly BlockHash[]): (StoreTier | undefined)[] {
    this.check.model(modelId);
    this.check.hashes(hashes, 'exists');
    return hashes.map((h) => this.tierOf(blockKey(modelId, h)));
  }

  /** How many leading blocks of a hash chain the store holds, and in which tiers. */
  longestPrefix(modelId: string, chain: readonly BlockHash[]): PrefixResult {
    this.check.model(modelId);
    this.check.hashes(chain, 'longestPrefix');
    const tiers: StoreTier[] = [];
    for (const hash of chain) {
      const tier = this.tierOf(blockKey(modelId, hash));
      if (tier === undefined) break;
      tiers.push(tier);
    }
    return { length: tiers.length, tiers };
  }

  /** Deletes blocks from every tier; blocks under a read lease are kept and reported as `leased`. */
  async remove(modelId: string, hashes: readonly BlockHash[]): Promise<RemoveResult> {
    this.assertOpen();
    this.check.model(modelId);
    this.check.hashes(hashes, 'remove');
    this.leases.sweep(this.c.clock());
    const leased: BlockHash[] = [];
    const fromMemory: MemoryEntry[] = [];
    const onDisk: BlockKey[] = [];
    const removed = new Set<BlockHash>();
    for (const hash of new Set(hashes)) {
      const key = blockKey(modelId, hash);
      if (this.tierOf(key) === undefined) continue;
      if (this.leases.isLeased(key)) {
        leased.push(hash);
        continue;
      }
      const mem = this.memory.delete(key);
      if (mem !== undefined) fromMemory.push(mem);
      if (this.disk?.has(key) === true) onDisk.push(key);
      this.pins.forget(key);
      removed.add(hash);
    }
    const fromDisk = (await Promise.all(onDisk.map((key) => this.disk?.remove(key)))).filter((e): e is DiskEntry => e !== undefined);
    this.events.emit('removed', 'memory', fromMemory);
    this.events.emit('removed', 'disk', fromDisk);
    return { removed: [...removed], leased };
  }

  /** Soft-pins the blocks the store holds, for ttlMs; LRU eviction passes over them until then. */
  pin(modelId: string, hashes: readonly BlockHash[], ttlMs: number): PinResult {
    this.assertOpen();
    this.check.model(modelId);
    this.check.hashes(hashes, 'pin');
    const until = this.c.clock() + this.check.duration('ttlMs', ttlMs, ttlMs, this.c.maxPinMs);
    const pinned: BlockHash[] = [];
    for (const hash of hashes) {
      const key = blockKey(modelId, hash);
      if (this.tierOf(key) === undefined) continue;
      this.pins.pin(key, until);
      pinned.push(hash);
    }
    return { pinned, until };
  }

  /** Everything the store holds, as `stored` events (what a service publishes when it starts). */
  snapshot(): KvStoreEvent[] {
    const memory = [...this.memory.lru()];
    const disk = this.disk === undefined ? [] : [...this.disk.entries()].filter((e) => !this.memory.has(e.key));
    return [...blockEvents('stored', 'memory', memory), ...blockEvents('stored', 'disk', disk)];
  }

  stats(): KvStoreStats {
    const m = this.memory;
    const d = this.disk;
    return {
      memory: tierStats(this.counters.memory, m.blocks, m.storedBytes, m.reservedBytes, m.capacityBytes),
      disk: tierStats(this.counters.disk, d?.blocks ?? 0, d?.storedBytes ?? 0, d?.reservedBytes ?? 0, d?.capacityBytes ?? 0),
      puts: {
        active: this.puts.size,
        committed: this.counters.committedPuts,
        revoked: this.counters.revokedPuts,
        reclaimed: this.counters.reclaimedPuts,
      },
      activeLeases: this.leases.size,
      activePins: this.pins.size,
      demotions: this.counters.demotions,
      promotions: this.counters.promotions,
    };
  }

  /** Reclaims expired puts and lapses expired leases and pins (the sweeper calls it every sweepIntervalMs). */
  sweep(): number {
    const now = this.c.clock();
    const expired = this.puts.expired(now);
    for (const put of expired) this.reclaim(put);
    this.leases.sweep(now);
    this.pins.sweep(now);
    this.evictor.afterGrowth();
    return expired.length;
  }

  /** Resolves when no demotion or disk write is under way. */
  async whenIdle(): Promise<void> {
    await this.evictor.idle();
    await this.disk?.idle();
  }

  /** Stops the sweeper, ends open puts and waits for disk work; later calls fail with `unavailable`. */
  async close(options: CloseOptions = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    for (const put of this.puts.all()) this.endPut(put);
    await this.whenIdle();
    if (options.flushToDisk === true) await this.evictor.copyAllToDisk();
    await this.disk?.idle();
  }

  private tierOf(key: BlockKey): StoreTier | undefined {
    if (this.memory.has(key)) return 'memory';
    if (this.disk?.has(key) === true) return 'disk';
    return undefined;
  }

  private verifyMemory(entry: MemoryEntry): boolean {
    if (crc32(entry.bytes) === entry.crc) return true;
    this.c.logger.warn({ block: entry.key }, 'kv-store: memory block failed its checksum; dropped');
    this.memory.delete(entry.key);
    this.counters.memory.corruptDropped += 1;
    this.events.emit('removed', 'memory', [entry]);
    if (this.disk?.has(entry.key) !== true) this.pins.forget(entry.key);
    return false;
  }

  /** A verified disk block (touched, maybe promoted), or undefined after dropping a bad file. */
  private async readDisk(entry: DiskEntry): Promise<Uint8Array | undefined> {
    const disk = this.disk;
    if (disk === undefined) return undefined;
    const dc = this.counters.disk;
    const read = await disk.read(entry);
    if (!read.ok) {
      dc.misses += 1;
      this.c.logger.warn({ block: entry.key, path: entry.path, reason: read.reason }, 'kv-store: disk block failed its check; dropped');
      const removed = await disk.remove(entry.key);
      if (removed !== undefined) {
        dc.corruptDropped += 1;
        this.events.emit('removed', 'disk', [removed]);
        if (!this.memory.has(entry.key)) this.pins.forget(entry.key);
      }
      return undefined;
    }
    disk.touch(entry);
    dc.hits += 1;
    dc.readBytes += read.bytes.byteLength;
    this.promote(entry, read.bytes);
    return read.bytes;
  }

  private promote(from: DiskEntry, bytes: Uint8Array): void {
    if (!this.c.promoteOnRead || this.closed || this.memory.has(from.key)) return;
    const entry = memoryEntry(from.key, from.modelId, from.hash, bytes, from.blockCrc);
    if (!this.memory.tryInsert(entry, this.c.highWatermark * this.memory.capacityBytes)) return;
    this.counters.promotions += 1;
    this.counters.memory.writeBytes += bytes.byteLength;
    this.events.emit('stored', 'memory', [entry]);
  }

  private livePut(putId: string): PendingPut {
    if (typeof putId !== 'string') throw invalidArgument('putId must be a string');
    const put = this.puts.get(putId);
    if (put === undefined) {
      throw new KvStoreError(
        'not_found',
        `put ${putId} is not open: never begun, already committed or revoked, or reclaimed after its ttl`,
      );
    }
    if (this.c.clock() >= put.expiresAt) {
      this.reclaim(put);
      throw new KvStoreError('not_found', `put ${putId} expired before it was committed and has been reclaimed`);
    }
    return put;
  }

  private reclaim(put: PendingPut): void {
    this.endPut(put);
    this.counters.reclaimedPuts += 1;
    this.c.logger.info(
      { putId: put.id, modelId: put.modelId, blocks: put.blocks.size },
      'kv-store: reclaimed a put not committed within its ttl',
    );
  }

  private endPut(put: PendingPut): void {
    if (!this.puts.delete(put.id)) return;
    this.memory.unreserve(put.reservedBytes);
    if (put.leaseId !== undefined) this.leases.release(put.leaseId);
    for (const b of put.blocks.values()) b.bytes = undefined;
  }

  private assertOpen(): void {
    if (this.closed) throw new KvStoreError('unavailable', 'the kv-store is closed');
  }
}

function tierStats(c: TierCounters, blocks: number, bytes: number, reservedBytes: number, capacityBytes: number): TierStats {
  return { ...c, blocks, bytes, reservedBytes, usedBytes: bytes + reservedBytes, capacityBytes };
}
