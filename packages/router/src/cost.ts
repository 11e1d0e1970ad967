import type { WorkerLoad } from './load-tracker';
import type { PrefixMatch } from './prefix-match';

/** Read access to per-worker load; `LoadTracker` is one. */
export interface LoadView {
  get(worker: string): WorkerLoad;
}

/**
 * The cost model, in block-equivalents (the work of prefilling one block of `blockSize` tokens):
 *
 *   cost(w) = prefillWeight × uncachedPrefillBlocks(w)
 *           + queueWeight   × queuedPrefillTokens(w) / blockSize
 *           + decodeWeight  × running(w)
 *           + waitingWeight × waiting(w)
 *           + (overloaded(w) ? overloadPenalty : 0)
 *
 *   uncachedPrefillBlocks(w) = promptTokens / blockSize
 *           − device(w) − hostCredit × host(w) − diskCredit × disk(w) − storeCredit × storeOnly(w)
 *
 * where device/host/disk(w) are the leading chain blocks w holds in that tier (each block in its fastest
 * tier) and storeOnly(w) = max(0, storeBlocks − leading blocks on w): blocks past w's own prefix that the
 * kv-store can supply. Running and queued counts include the router's own in-flight accounting.
 */
export interface CostWeights {
  /** Block-equivalents per uncached prompt block; 1 by definition of the unit. Set 0 to ignore the cache. */
  readonly prefillWeight: number;
  /** Block-equivalents per block of prefill already queued on the worker: ours waits behind it. Default 1. */
  readonly queueWeight: number;
  /**
   * Block-equivalents per running sequence: the decode slowdown one more sequence in the batch causes, and
   * the hot-spot guard (a worker holding a shared prefix of N blocks stops winning once it runs about
   * N / decodeWeight more sequences than the others). Default 1.
   */
  readonly decodeWeight: number;
  /** Block-equivalents per waiting sequence (memory pressure beyond its queued prefill). Default 1. */
  readonly waitingWeight: number;
  /** Fraction of a recompute saved by a block in the worker's host memory (PCIe copy back). Default 0.9. */
  readonly hostCredit: number;
  /** Fraction of a recompute saved by a block on the worker's local disk (read + copy). Default 0.6. */
  readonly diskCredit: number;
  /** Fraction of a recompute saved by a block fetched from the kv-store over the network. Default 0.5. */
  readonly storeCredit: number;
  /** Block-equivalents added to an overloaded worker: large enough that it wins only if all are. Default 10 000. */
  readonly overloadPenalty: number;
}

export const DEFAULT_COST_WEIGHTS: CostWeights = {
  prefillWeight: 1,
  queueWeight: 1,
  decodeWeight: 1,
  waitingWeight: 1,
  hostCredit: 0.9,
  diskCredit: 0.6,
  storeCredit: 0.5,
  overloadPenalty: 10_000,
};

/** When a worker counts as overloaded (penalised by kv-aware, avoided by affinity, skipped for prefill). */
export interface OverloadThresholds {
  /** More waiting sequences than this, count. Default 8. */
  readonly maxWaiting: number;
  /** Free KV blocks at or below this fraction of the pool (0 means "no free blocks"). Default 0.01. */
  readonly minFreeBlockFraction: number;
}

export const DEFAULT_OVERLOAD: OverloadThresholds = { maxWaiting: 8, minFreeBlockFraction: 0.01 };

export function isOverloaded(load: WorkerLoad, t: OverloadThresholds): boolean {
  if (load.waiting > t.maxWaiting) return true;
  return load.totalBlocks > 0 && load.freeBlocks <= t.minFreeBlockFraction * load.totalBlocks;
}

// `key` below is a worker's PrefixMatch key (`keyOf`, or `PrefixIndex.slotsFor`); −1 means no match.

/** Leading blocks past the worker's own prefix that only the kv-store holds. */
export function storeOnlyBlocks(match: PrefixMatch, key: number): number {
  return Math.max(0, match.storeBlocks - match.blocksAt(key));
}

/** Prompt tokens the worker must compute: everything not reachable in any tier (including the store). */
export function uncachedTokens(match: PrefixMatch, key: number, promptTokens: number, blockSize: number): number {
  return Math.max(0, promptTokens - Math.max(match.blocksAt(key), match.storeBlocks) * blockSize);
}

/** Prefill work after prefix credit, in blocks (the `uncachedPrefillBlocks` term above). */
export function uncachedPrefillBlocks(match: PrefixMatch, key: number, promptTokens: number, blockSize: number, w: CostWeights): number {
  const credit =
    match.deviceAt(key) + w.hostCredit * match.hostAt(key) + w.diskCredit * match.diskAt(key) + w.storeCredit * storeOnlyBlocks(match, key);
  return Math.max(0, promptTokens / blockSize - credit);
}

/** The load part of the cost (everything but the prefill term). */
export function loadCost(load: WorkerLoad, blockSize: number, w: CostWeights, o: OverloadThresholds): number {
  return (
    (w.queueWeight * load.queuedPrefillTokens) / blockSize +
    w.decodeWeight * load.running +
    w.waitingWeight * load.waiting +
    (isOverloaded(load, o) ? w.overloadPenalty : 0)
  );
}

/** Every term of the cost for one worker, named, for explanations. */
export function costTerms(
  match: PrefixMatch,
  key: number,
  load: WorkerLoad,
  promptTokens: number,
  blockSize: number,
  w: CostWeights,
  o: OverloadThresholds,
): Readonly<Record<string, number>> {
  const uncached = uncachedPrefillBlocks(match, key, promptTokens, blockSize, w);
  return {
    cost: w.prefillWeight * uncached + loadCost(load, blockSize, w, o),
    uncachedPrefillBlocks: uncached,
    deviceHitBlocks: match.deviceAt(key),
    hostHitBlocks: match.hostAt(key),
    diskHitBlocks: match.diskAt(key),
    storeHitBlocks: storeOnlyBlocks(match, key),
    queuedPrefillBlocks: load.queuedPrefillTokens / blockSize,
    running: load.running,
    waiting: load.waiting,
    overloaded: isOverloaded(load, o) ? 1 : 0,
  };
}

/** Keeps the indexes of the `k` best candidates under the order `before`, best first. */
export class TopK {
  readonly idx: number[] = [];
  constructor(
    private readonly k: number,
    private readonly before: (a: number, b: number) => boolean,
  ) {}

  offer(i: number): void {
    const idx = this.idx;
    if (idx.length === this.k && (this.k === 0 || !this.before(i, idx[idx.length - 1]!))) return;
    let at = idx.length;
    while (at > 0 && this.before(i, idx[at - 1]!)) at--;
    idx.splice(at, 0, i);
    if (idx.length > this.k) idx.pop();
  }
}
