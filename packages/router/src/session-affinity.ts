import { DEFAULT_OVERLOAD, isOverloaded, type OverloadThresholds } from './cost';
import type { PolicyDecision, PolicyInput, RoutingPolicy } from './policy';
import { hashString32, mix32 } from './rng';
import { LeastLoadedPolicy, type LeastLoadedOptions } from './simple-policies';

export interface SessionAffinityOptions {
  /**
   * When the preferred worker counts as overloaded, the request yields to the least-loaded candidate (the
   * hot-spot guard for a heavy session). Default: `DEFAULT_OVERLOAD` (more than 8 waiting, or ≤ 1% free blocks).
   */
  readonly yieldWhen?: Partial<OverloadThresholds>;
  /** Settings of the least-loaded fallback, also used for requests without a session key. */
  readonly leastLoaded?: LeastLoadedOptions;
}

/** Worker-id hashes kept between calls; the cache is dropped whole past this (churn of ids over time). */
const MAX_CACHED_ID_HASHES = 100_000;

/**
 * Rendezvous (highest random weight) hashing of the session key over the candidates: a session sticks to one
 * worker, and when a worker joins or leaves only the sessions that hash to it move.
 */
export class SessionAffinityPolicy implements RoutingPolicy {
  readonly name = 'session-affinity' as const;
  readonly yieldWhen: OverloadThresholds;
  private readonly fallback: LeastLoadedPolicy;
  private readonly idHashes = new Map<string, number>();

  constructor(opts: SessionAffinityOptions = {}) {
    this.yieldWhen = { ...DEFAULT_OVERLOAD, ...opts.yieldWhen };
    this.fallback = new LeastLoadedPolicy(opts.leastLoaded);
  }

  /** The worker a session maps to when nobody is overloaded. */
  preferred(sessionKey: string, candidates: PolicyInput['candidates']): string {
    return candidates[this.preferredIndex(sessionKey, candidates)]!.id;
  }

  private preferredIndex(sessionKey: string, candidates: PolicyInput['candidates']): number {
    const s = mix32(hashString32(sessionKey));
    let best = 0;
    let bestWeight = -1;
    for (let i = 0; i < candidates.length; i++) {
      const id = candidates[i]!.id;
      const weight = mix32(s ^ this.idHash(id));
      if (weight > bestWeight || (weight === bestWeight && id < candidates[best]!.id)) {
        best = i;
        bestWeight = weight;
      }
    }
    return best;
  }

  choose(input: PolicyInput): PolicyDecision {
    const key = input.request.sessionKey;
    if (key === undefined || key === '') {
      const d = this.fallback.choose(input);
      return { ...d, reason: `no session key; ${d.reason}` };
    }
    const at = this.preferredIndex(key, input.candidates);
    const preferred = input.candidates[at]!.id;
    if (!isOverloaded(input.loads[at]!, this.yieldWhen)) {
      return { worker: preferred, reason: `session hashes to ${preferred} (rendezvous over ${input.candidates.length})`, scores: [] };
    }
    const d = this.fallback.choose(input);
    return { ...d, reason: `affinity yielded: preferred ${preferred} overloaded; ${d.reason}` };
  }

  private idHash(id: string): number {
    let h = this.idHashes.get(id);
    if (h === undefined) {
      h = mix32(hashString32(id));
      if (this.idHashes.size >= MAX_CACHED_ID_HASHES) this.idHashes.clear();
      this.idHashes.set(id, h);
    }
    return h;
  }
}
