import { DEFAULT_COST_WEIGHTS, DEFAULT_OVERLOAD, TopK, isOverloaded, loadCost, type CostWeights, type OverloadThresholds } from './cost';
import { DEFAULT_EXPLAIN_CANDIDATES, type CandidateScore, type PolicyDecision, type PolicyInput, type RoutingPolicy } from './policy';
import { createRng } from './rng';

/** Each candidate in turn, in the order the caller lists them (keep that order stable). */
export class RoundRobinPolicy implements RoutingPolicy {
  readonly name = 'round-robin' as const;
  private next = 0;

  choose({ candidates }: PolicyInput): PolicyDecision {
    const i = this.next % candidates.length;
    this.next = (i + 1) % candidates.length;
    return { worker: candidates[i]!.id, reason: `turn ${i} of ${candidates.length}`, scores: [] };
  }
}

/** Uniform draw from a seeded generator, so a simulation replays exactly. */
export class RandomPolicy implements RoutingPolicy {
  readonly name = 'random' as const;
  private readonly random: () => number;

  /** @param seed generator seed; default 1. */
  constructor(seed = 1) {
    this.random = createRng(seed);
  }

  choose({ candidates }: PolicyInput): PolicyDecision {
    const i = Math.floor(this.random() * candidates.length);
    return { worker: candidates[i]!.id, reason: `random draw ${i} of ${candidates.length}`, scores: [] };
  }
}

export interface LeastLoadedOptions {
  readonly weights?: Partial<CostWeights>;
  readonly overload?: Partial<OverloadThresholds>;
  /** How many of the least-loaded candidates a decision explains. Default 8. */
  readonly explainCandidates?: number;
}

/** The kv-aware cost without its prefill term: queued prefill + running + waiting + overload penalty. */
export class LeastLoadedPolicy implements RoutingPolicy {
  readonly name = 'least-loaded' as const;
  readonly weights: CostWeights;
  readonly overload: OverloadThresholds;
  private readonly explain: number;

  constructor(opts: LeastLoadedOptions = {}) {
    this.weights = { ...DEFAULT_COST_WEIGHTS, ...opts.weights };
    this.overload = { ...DEFAULT_OVERLOAD, ...opts.overload };
    this.explain = opts.explainCandidates ?? DEFAULT_EXPLAIN_CANDIDATES;
  }

  choose({ candidates, loads, blockSize }: PolicyInput): PolicyDecision {
    const n = candidates.length;
    const costs = new Float64Array(n);
    const running = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const load = loads[i]!;
      costs[i] = loadCost(load, blockSize, this.weights, this.overload);
      running[i] = load.running;
    }
    const top = new TopK(Math.max(1, this.explain), (a, b) =>
      costs[a] !== costs[b]
        ? costs[a]! < costs[b]!
        : running[a] !== running[b]
          ? running[a]! < running[b]!
          : candidates[a]!.id < candidates[b]!.id,
    );
    for (let i = 0; i < n; i++) top.offer(i);
    const scores: CandidateScore[] = top.idx.slice(0, this.explain).map((i) => {
      const load = loads[i]!;
      return {
        worker: candidates[i]!.id,
        cost: costs[i]!,
        terms: {
          cost: costs[i]!,
          queuedPrefillBlocks: load.queuedPrefillTokens / blockSize,
          running: load.running,
          waiting: load.waiting,
          overloaded: isOverloaded(load, this.overload) ? 1 : 0,
        },
      };
    });
    const best = top.idx[0]!;
    return { worker: candidates[best]!.id, reason: `least load ${costs[best]!.toFixed(2)} of ${n} candidates`, scores };
  }
}
