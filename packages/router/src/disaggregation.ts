import {
  DEFAULT_COST_WEIGHTS,
  DEFAULT_OVERLOAD,
  TopK,
  isOverloaded,
  storeOnlyBlocks,
  uncachedPrefillBlocks,
  uncachedTokens,
  type CostWeights,
  type OverloadThresholds,
} from './cost';
import type { WorkerLoad } from './load-tracker';
import { DEFAULT_EXPLAIN_CANDIDATES, type CandidateScore } from './policy';
import type { PrefixMatch } from './prefix-match';
import type { RouteRequest, WorkerInfo } from './types';

/** Conditional disaggregation: when prefill leaves the decode worker. */
export interface DisaggConfig {
  /**
   * Prefill stays on the decode worker when fewer prompt tokens than this are uncached there (in any tier,
   * store included), in tokens: a short suffix costs less to compute in place than to ship as KV. Default 256.
   */
  readonly remotePrefillMinTokens: number;
  /**
   * A prefill worker with more queued prefill tokens than this is busy, in tokens; when every prefill worker
   * is busy (or overloaded) prefill stays local rather than queueing. Default 8192.
   */
  readonly prefillQueueMaxTokens: number;
}

export const DEFAULT_DISAGG: DisaggConfig = { remotePrefillMinTokens: 256, prefillQueueMaxTokens: 8192 };

export type LocalPrefillReason = 'mixed-worker' | 'short-uncached-suffix' | 'no-prefill-worker' | 'prefill-pool-busy';

export type PrefillPlacement =
  | { readonly prefill: 'local'; readonly reason: LocalPrefillReason }
  | { readonly prefill: 'remote'; readonly worker: string };

export interface PrefillInput {
  readonly decode: WorkerInfo;
  /** The decode worker's `PrefixMatch` key. */
  readonly decodeKey: number;
  readonly request: RouteRequest;
  readonly match: PrefixMatch;
  readonly prefillWorkers: readonly WorkerInfo[];
  /** Load of each prefill worker, aligned with `prefillWorkers`. */
  readonly prefillLoads: readonly WorkerLoad[];
  /** `PrefixMatch` key of each prefill worker, aligned with `prefillWorkers`. */
  readonly prefillKeys: ArrayLike<number>;
  readonly blockSize: number;
}

export interface PrefillDecision {
  readonly placement: PrefillPlacement;
  /** Prompt tokens the decode worker would have to compute itself. */
  readonly decodeUncachedTokens: number;
  /** Best prefill candidates, best first, when the prefill pool was scored; else empty. */
  readonly scores: readonly CandidateScore[];
}

export interface PrefillPlacerOptions {
  readonly config?: Partial<DisaggConfig>;
  readonly weights?: Partial<CostWeights>;
  readonly overload?: Partial<OverloadThresholds>;
  readonly explainCandidates?: number;
}

/**
 * Picks where prefill runs once the decode worker is chosen. A remote prefill worker p is scored
 *   cost(p) = prefillWeight × uncachedPrefillBlocks(p) + queueWeight × queuedPrefillTokens(p) / blockSize
 * (the kv-aware terms without decode load, which a prefill worker does not carry).
 */
export class PrefillPlacer {
  readonly config: DisaggConfig;
  readonly weights: CostWeights;
  readonly overload: OverloadThresholds;
  private readonly explain: number;

  constructor(opts: PrefillPlacerOptions = {}) {
    this.config = { ...DEFAULT_DISAGG, ...opts.config };
    this.weights = { ...DEFAULT_COST_WEIGHTS, ...opts.weights };
    this.overload = { ...DEFAULT_OVERLOAD, ...opts.overload };
    this.explain = opts.explainCandidates ?? DEFAULT_EXPLAIN_CANDIDATES;
  }

  place(input: PrefillInput): PrefillDecision {
    const { decode, request, match, prefillWorkers, prefillLoads, prefillKeys, blockSize } = input;
    const decodeUncachedTokens = uncachedTokens(match, input.decodeKey, request.promptTokens, blockSize);
    const local = (reason: LocalPrefillReason): PrefillDecision => ({
      placement: { prefill: 'local', reason },
      decodeUncachedTokens,
      scores: [],
    });
    if (decode.role === 'mixed') return local('mixed-worker');
    if (decodeUncachedTokens < this.config.remotePrefillMinTokens) return local('short-uncached-suffix');
    if (prefillWorkers.length === 0) return local('no-prefill-worker');

    const w = this.weights;
    const usable: number[] = [];
    const costs = new Float64Array(prefillWorkers.length);
    const queued = new Float64Array(prefillWorkers.length);
    for (let i = 0; i < prefillWorkers.length; i++) {
      const load = prefillLoads[i]!;
      if (load.queuedPrefillTokens > this.config.prefillQueueMaxTokens || isOverloaded(load, this.overload)) continue;
      queued[i] = load.queuedPrefillTokens;
      costs[i] =
        w.prefillWeight * uncachedPrefillBlocks(match, prefillKeys[i]!, request.promptTokens, blockSize, w) +
        (w.queueWeight * load.queuedPrefillTokens) / blockSize;
      usable.push(i);
    }
    if (usable.length === 0) return local('prefill-pool-busy');

    const top = new TopK(Math.max(1, this.explain), (a, b) =>
      costs[a] !== costs[b]
        ? costs[a]! < costs[b]!
        : queued[a] !== queued[b]
          ? queued[a]! < queued[b]!
          : prefillWorkers[a]!.id < prefillWorkers[b]!.id,
    );
    for (const i of usable) top.offer(i);
    const scores = top.idx.slice(0, this.explain).map((i): CandidateScore => {
      const id = prefillWorkers[i]!.id;
      const key = prefillKeys[i]!;
      return {
        worker: id,
        cost: costs[i]!,
        terms: {
          cost: costs[i]!,
          uncachedPrefillBlocks: uncachedPrefillBlocks(match, key, request.promptTokens, blockSize, w),
          deviceHitBlocks: match.deviceAt(key),
          hostHitBlocks: match.hostAt(key),
          diskHitBlocks: match.diskAt(key),
          storeHitBlocks: storeOnlyBlocks(match, key),
          queuedPrefillBlocks: queued[i]! / blockSize,
        },
      };
    });
    return { placement: { prefill: 'remote', worker: prefillWorkers[top.idx[0]!]!.id }, decodeUncachedTokens, scores };
  }
}
