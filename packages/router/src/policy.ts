import type { LoadView } from './cost';
import type { WorkerLoad } from './load-tracker';
import type { PrefixMatch } from './prefix-match';
import type { RouteRequest, WorkerInfo } from './types';

export type PolicyName = 'kv-aware' | 'round-robin' | 'least-loaded' | 'session-affinity' | 'random';

export const POLICY_NAMES: readonly PolicyName[] = ['kv-aware', 'round-robin', 'least-loaded', 'session-affinity', 'random'];

/** How many of the best candidates a decision explains by default (terms per candidate). */
export const DEFAULT_EXPLAIN_CANDIDATES = 8;

/** Everything a policy may look at; built by the Router, or by hand in tests. */
export interface PolicyInput {
  readonly request: RouteRequest;
  /** Decode-capable workers (`decode` or `mixed`), never empty. */
  readonly candidates: readonly WorkerInfo[];
  /** Load of each candidate, aligned with `candidates`. */
  readonly loads: readonly WorkerLoad[];
  /** `PrefixMatch` key of each candidate, aligned with `candidates` (−1: unknown to the index). */
  readonly matchKeys: ArrayLike<number>;
  readonly match: PrefixMatch;
  /** Tokens per KV block. */
  readonly blockSize: number;
}

/** Per-candidate loads and match keys by lookup, for callers without the Router's memoised arrays. */
export function lookupCandidates(
  workers: readonly WorkerInfo[],
  loads: LoadView,
  match: PrefixMatch,
): { readonly loads: WorkerLoad[]; readonly matchKeys: Int32Array } {
  return { loads: workers.map((w) => loads.get(w.id)), matchKeys: Int32Array.from(workers, (w) => match.keyOf(w.id)) };
}

/** Named numbers that produced one candidate's score, for debug logs. */
export type CostTerms = Readonly<Record<string, number>>;

export interface CandidateScore {
  readonly worker: string;
  /** Lower is better. */
  readonly cost: number;
  readonly terms: CostTerms;
}

export interface PolicyDecision {
  readonly worker: string;
  /** One line saying why, e.g. "min cost 12.5" or "affinity yielded: preferred d1 overloaded". */
  readonly reason: string;
  /** The best-scored candidates (up to the router's `explainCandidates`), best first; may be empty. */
  readonly scores: readonly CandidateScore[];
}

export interface RoutingPolicy {
  readonly name: PolicyName;
  choose(input: PolicyInput): PolicyDecision;
}
