import {
  DEFAULT_COST_WEIGHTS,
  DEFAULT_OVERLOAD,
  TopK,
  costTerms,
  loadCost,
  uncachedPrefillBlocks,
  type CostWeights,
  type OverloadThresholds,
} from './cost';
import { DEFAULT_EXPLAIN_CANDIDATES, type CandidateScore, type PolicyDecision, type PolicyInput, type RoutingPolicy } from './policy';
import { createRng, hashString32, mix32 } from './rng';

export interface KvAwareOptions {
  readonly weights?: Partial<CostWeights>;
  readonly overload?: Partial<OverloadThresholds>;
  /**
   * Softmax temperature over cost, in block-equivalents: P(w) ∝ exp(−(cost(w) − min cost) / temperature).
   * 0 picks the argmin. Default 0.
   */
  readonly temperature?: number;
  /** Seed of the sampler used when temperature > 0. Default 1. */
  readonly seed?: number;
  /** How many of the best candidates a decision explains (terms per candidate). Default 8. */
  readonly explainCandidates?: number;
}

/** Costs are sums of small rationals; closer than this they are a tie. */
const TIE_EPSILON = 1e-9;

/** Minimum cost, see `CostWeights` for the formula: prefix credit against queued and running load. */
export class KvAwarePolicy implements RoutingPolicy {
  readonly name = 'kv-aware' as const;
  readonly weights: CostWeights;
  readonly overload: OverloadThresholds;
  readonly temperature: number;
  private readonly explain: number;
  private readonly random: () => number;
  private costs = new Float64Array(16);
  private readonly idHashes = new Map<string, number>();
  private running = new Float64Array(16);

  constructor(opts: KvAwareOptions = {}) {
    this.weights = { ...DEFAULT_COST_WEIGHTS, ...opts.weights };
    this.overload = { ...DEFAULT_OVERLOAD, ...opts.overload };
    this.temperature = opts.temperature ?? 0;
    this.explain = opts.explainCandidates ?? DEFAULT_EXPLAIN_CANDIDATES;
    this.random = createRng(opts.seed ?? 1);
  }

  private workerHash(id: string): number {
    let h = this.idHashes.get(id);
    if (h === undefined) {
      h = hashString32(id);
      this.idHashes.set(id, h);
    }
    return h;
  }

  choose(input: PolicyInput): PolicyDecision {
    const { candidates, match, loads, matchKeys, blockSize, request } = input;
    const n = candidates.length;
    if (this.costs.length < n) {
      this.costs = new Float64Array(n * 2);
      this.running = new Float64Array(n * 2);
    }
    const costs = this.costs;
    const running = this.running;
    const w = this.weights;
    for (let i = 0; i < n; i++) {
      const load = loads[i]!;
      costs[i] =
        w.prefillWeight * uncachedPrefillBlocks(match, matchKeys[i]!, request.promptTokens, blockSize, w) +
        loadCost(load, blockSize, w, this.overload);
      running[i] = load.running;
    }
    // Last tie-break: rendezvous order of (the prompt's first block, worker), so that prompts nobody holds
    // spread over the whole cluster (lowest id first would pile them on a few workers) while equal
    // prompts still agree on a worker.
    const key = promptKey(request.chain[0], request.requestId);
    const before = (a: number, b: number): boolean => {
      const d = costs[a]! - costs[b]!;
      if (d < -TIE_EPSILON) return true;
      if (d > TIE_EPSILON) return false;
      if (running[a] !== running[b]) return running[a]! < running[b]!;
      const ra = mix32(key ^ this.workerHash(candidates[a]!.id));
      const rb = mix32(key ^ this.workerHash(candidates[b]!.id));
      if (ra !== rb) return ra < rb;
      return candidates[a]!.id < candidates[b]!.id;
    };
    const top = new TopK(Math.max(1, this.explain), before);
    for (let i = 0; i < n; i++) top.offer(i);
    const best = top.idx[0]!;
    const chosen = this.temperature > 0 ? this.sample(n, best) : best;

    const explained = top.idx.slice(0, this.explain);
    if (!explained.includes(chosen)) explained.push(chosen);
    const scores: CandidateScore[] = explained.map((i) => {
      const terms = costTerms(match, matchKeys[i]!, loads[i]!, request.promptTokens, blockSize, w, this.overload);
      return { worker: candidates[i]!.id, cost: costs[i]!, terms };
    });
    const reason =
      chosen === best
        ? `min cost ${fmt(costs[chosen]!)} of ${n} candidates`
        : `softmax sample (temperature ${this.temperature}): cost ${fmt(costs[chosen]!)}, min ${fmt(costs[best]!)}`;
    return { worker: candidates[chosen]!.id, reason, scores };
  }

  private sample(n: number, best: number): number {
    const minCost = this.costs[best]!;
    let total = 0;
    for (let i = 0; i < n; i++) total += Math.exp(-(this.costs[i]! - minCost) / this.temperature);
    let r = this.random() * total;
    for (let i = 0; i < n; i++) {
      r -= Math.exp(-(this.costs[i]! - minCost) / this.temperature);
      if (r < 0) return i;
    }
    return best; // only reached through rounding
  }
}

function fmt(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toFixed(2);
}

/** 32 bits identifying the prompt: its first block hash, or the request id for prompts under a block. */
function promptKey(firstBlock: string | undefined, requestId: string): number {
  return firstBlock !== undefined ? Number.parseInt(firstBlock.slice(-8), 16) | 0 : hashString32(requestId);
}
