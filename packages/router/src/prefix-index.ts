import { BlockTable } from './block-table';
import { TIER_BITS } from './holder-list';
import type { PrefixMatch, SlotTable } from './prefix-match';
import { PrefixWalker } from './prefix-walk';
import { STORE_HOLDER, type KvEvent, type KvEventBatch, type SnapshotEntry, type Tier } from './types';

export { PrefixMatch, type WorkerPrefixMatch } from './prefix-match';

/**
 * The global prefix index: block hash → holders (worker id + tiers), fed by batched KV events and snapshots.
 *
 * Trust rule (what makes a lost or reordered event harmless):
 * - Batches from one worker incarnation must arrive with seq = last + 1. Anything else (a hole, a reorder, a
 *   new incarnation, a worker never seen) returns `'gap'` and the worker's entries are ignored by
 *   `matchPrefix` until `applySnapshot` replaces them. Redeliveries (seq ≤ last) are dropped and return `'ok'`.
 * - Each applied batch or snapshot confirms the worker's entries for `resyncPeriodMs`. Past that, the entries
 *   are ignored until a contiguous batch or a snapshot confirms them again (a contiguous batch proves nothing
 *   was missed in between). So a lost event is caught by the next batch's seq, or, if no batch follows, by
 *   expiry: the index never claims a block a worker does not hold for longer than one resync period.
 * Caller contract (the gateway): subscribe to events first, then fetch a snapshot per worker; on `'gap'` or
 * when `needsSnapshot(worker)` (expired), fetch a snapshot once (coalesce: more batches will say `'gap'`
 * meanwhile; they are buffered and replayed after the snapshot); resync every worker by snapshot at least
 * once per `resyncPeriodMs`, or have workers publish an empty batch as a heartbeat more often than that.
 */
export interface PrefixIndexOptions {
  /** How long an event batch or snapshot vouches for a worker's entries, in ms. Default 30 000. */
  readonly resyncPeriodMs?: number;
  /** Batches kept per worker while it waits for a snapshot, replayed after it if contiguous. Default 256. */
  readonly maxBufferedBatches?: number;
  /** Time source in ms; injectable for tests. Default `Date.now`. */
  readonly clock?: () => number;
}

export const DEFAULT_RESYNC_PERIOD_MS = 30_000;
export const DEFAULT_MAX_BUFFERED_BATCHES = 256;

export type HolderPhase = 'live' | 'awaiting-snapshot' | 'expired';

export interface HolderStatus {
  readonly phase: HolderPhase;
  readonly incarnation: string | undefined;
  readonly seq: number;
  readonly confirmedAt: number;
  readonly blocks: number;
}

interface Holder {
  readonly id: string;
  readonly slot: number;
  incarnation: string | undefined;
  seq: number;
  awaitingSnapshot: boolean;
  confirmedAt: number;
  /** hash → tier mask: the reverse index, so a worker can be dropped without scanning every block. */
  readonly blocks: Map<string, number>;
  buffered: KvEventBatch[];
}

export class PrefixIndex {
  readonly resyncPeriodMs: number;
  private readonly maxBuffered: number;
  private readonly clock: () => number;
  private readonly table = new BlockTable();
  private readonly walker = new PrefixWalker();
  private readonly holders = new Map<string, Holder>();
  private readonly freeSlots: number[] = [];
  private readonly slotIds: (string | undefined)[] = [];
  private trustedUntil = new Float64Array(64);
  /** Bumped when a holder is added or removed, for `slotsFor`'s memo. */
  private holdersVersion = 0;
  private readonly slotsMemo = new WeakMap<readonly { readonly id: string }[], { version: number; slots: Int32Array }>();
  private readonly slotTable: SlotTable & { version: number } = {
    slotOf: (worker) => this.holders.get(worker)?.slot ?? -1,
    idOf: (slot) => this.slotIds[slot],
    version: 0,
  };

  constructor(opts: PrefixIndexOptions = {}) {
    this.resyncPeriodMs = opts.resyncPeriodMs ?? DEFAULT_RESYNC_PERIOD_MS;
    this.maxBuffered = opts.maxBufferedBatches ?? DEFAULT_MAX_BUFFERED_BATCHES;
    this.clock = opts.clock ?? Date.now;
  }

  applyBatch(batch: KvEventBatch): 'ok' | 'gap' {
    const h = this.holders.get(batch.worker) ?? this.addHolder(batch.worker);
    if (h.awaitingSnapshot) return this.buffer(h, batch);
    if (batch.incarnation !== h.incarnation) {
      // A new incarnation is a restarted process: whatever the old one held is gone.
      this.table.drop(h.slot, h.blocks);
      return this.startAwaiting(h, batch);
    }
    if (batch.seq <= h.seq) return 'ok';
    if (batch.seq !== h.seq + 1) return this.startAwaiting(h, batch);
    this.applyEvents(h, batch.events);
    h.seq = batch.seq;
    this.confirm(h);
    return 'ok';
  }

  /** Replaces everything known about `worker` with its state as of batch `seq`, then replays buffered batches. */
  applySnapshot(worker: string, incarnation: string, seq: number, entries: readonly SnapshotEntry[]): 'ok' | 'gap' {
    const h = this.holders.get(worker) ?? this.addHolder(worker);
    this.table.drop(h.slot, h.blocks);
    for (const e of entries) this.table.add(h.slot, h.blocks, e.hash, this.bitFor(h, e.tier));
    h.incarnation = incarnation;
    h.seq = seq;
    h.awaitingSnapshot = false;
    this.confirm(h);
    const pending = h.buffered.filter((b) => b.incarnation === incarnation && b.seq > seq).sort((a, b) => a.seq - b.seq);
    h.buffered = [];
    for (let i = 0; i < pending.length; i++) {
      const b = pending[i]!;
      if (b.seq <= h.seq) continue;
      if (b.seq !== h.seq + 1) {
        h.buffered = pending.slice(i);
        return this.startAwaiting(h, undefined);
      }
      this.applyEvents(h, b.events);
      h.seq = b.seq;
    }
    return 'ok';
  }

  /** Forgets a worker entirely (it left the registry). Unknown workers are ignored. */
  removeWorker(worker: string): void {
    const h = this.holders.get(worker);
    if (!h) return;
    this.table.drop(h.slot, h.blocks);
    this.trustedUntil[h.slot] = 0;
    this.slotIds[h.slot] = undefined;
    this.freeSlots.push(h.slot);
    this.holders.delete(worker);
    this.slotTable.version++; // outstanding matches must not read the freed slot as someone else's
    this.holdersVersion++;
  }

  /** True when the worker's entries are not trusted now and only a snapshot will restore them. */
  needsSnapshot(worker: string): boolean {
    const h = this.holders.get(worker);
    return h === undefined || h.awaitingSnapshot || this.trustedUntil[h.slot]! <= this.clock();
  }

  /** Every known holder whose entries are currently ignored (awaiting a snapshot or expired). */
  holdersNeedingSnapshot(): string[] {
    const out: string[] = [];
    for (const id of this.holders.keys()) if (this.needsSnapshot(id)) out.push(id);
    return out;
  }

  status(worker: string): HolderStatus | undefined {
    const h = this.holders.get(worker);
    if (!h) return undefined;
    const phase: HolderPhase = h.awaitingSnapshot ? 'awaiting-snapshot' : this.trustedUntil[h.slot]! <= this.clock() ? 'expired' : 'live';
    return { phase, incarnation: h.incarnation, seq: h.seq, confirmedAt: h.confirmedAt, blocks: h.blocks.size };
  }

  /**
   * `PrefixMatch` keys of `workers` (−1 for workers the index has never heard of), aligned with the array.
   * Memoised on the array's identity until a holder is added or removed; valid for matches made meanwhile.
   */
  slotsFor(workers: readonly { readonly id: string }[]): Int32Array {
    const memo = this.slotsMemo.get(workers);
    if (memo !== undefined && memo.version === this.holdersVersion) return memo.slots;
    const slots = Int32Array.from(workers, (w) => this.holders.get(w.id)?.slot ?? -1);
    this.slotsMemo.set(workers, { version: this.holdersVersion, slots });
    return slots;
  }

  /** Distinct block hashes indexed, and holders tracked. */
  size(): { readonly blocks: number; readonly holders: number } {
    return { blocks: this.table.size, holders: this.holders.size };
  }

  /**
   * For each trusted worker, how many LEADING blocks of `chain` it holds in its own tiers (stopping at its
   * first miss, each block counted in its fastest tier), and how many leading blocks the store holds.
   * Walks the chain once; cost is about one pass over the holders of each distinct holder set met, and it
   * stops when no worker is left and the store run has ended (see `PrefixWalker`).
   */
  matchPrefix(chain: readonly string[]): PrefixMatch {
    return this.walker.walk(chain, this.table, this.trustedUntil, this.clock(), this.slotTable, this.slotIds.length);
  }

  private applyEvents(h: Holder, events: readonly KvEvent[]): void {
    for (const ev of events) {
      if (ev.kind === 'cleared') {
        this.table.drop(h.slot, h.blocks);
        continue;
      }
      const bit = this.bitFor(h, ev.tier);
      if (ev.kind === 'stored') for (const hash of ev.hashes) this.table.add(h.slot, h.blocks, hash, bit);
      else for (const hash of ev.hashes) this.table.remove(h.slot, h.blocks, hash, bit);
    }
  }

  /** The kv-store's own stream counts as store-held whatever tier (memory, disk) it names. */
  private bitFor(h: Holder, tier: Tier): number {
    return h.id === STORE_HOLDER ? TIER_BITS.store : TIER_BITS[tier];
  }

  private startAwaiting(h: Holder, batch: KvEventBatch | undefined): 'gap' {
    h.awaitingSnapshot = true;
    this.trustedUntil[h.slot] = 0;
    return batch === undefined ? 'gap' : this.buffer(h, batch);
  }

  private buffer(h: Holder, batch: KvEventBatch): 'gap' {
    h.buffered.push(batch);
    if (h.buffered.length > this.maxBuffered) h.buffered.shift();
    return 'gap';
  }

  private confirm(h: Holder): void {
    h.confirmedAt = this.clock();
    this.trustedUntil[h.slot] = h.confirmedAt + this.resyncPeriodMs;
  }

  private addHolder(id: string): Holder {
    const slot = this.freeSlots.pop() ?? this.slotIds.length;
    if (slot >= this.trustedUntil.length) this.grow(slot + 1);
    this.walker.ensureSlots(slot + 1);
    this.slotIds[slot] = id;
    this.trustedUntil[slot] = 0;
    const h: Holder = {
      id,
      slot,
      incarnation: undefined,
      seq: -1,
      awaitingSnapshot: true,
      confirmedAt: 0,
      blocks: new Map(),
      buffered: [],
    };
    this.holders.set(id, h);
    this.holdersVersion++;
    return h;
  }

  private grow(min: number): void {
    const until = new Float64Array(Math.max(min, this.trustedUntil.length * 2));
    until.set(this.trustedUntil);
    this.trustedUntil = until;
  }
}
