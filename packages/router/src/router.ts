import { storeOnlyBlocks, uncachedTokens, type CostWeights, type OverloadThresholds } from './cost';
import type { PrefixCredit, RoutingDecision } from './decision';
import { PrefillPlacer, type DisaggConfig } from './disaggregation';
import { KvAwarePolicy } from './kv-aware';
import { LoadTracker, type WorkerLoad } from './load-tracker';
import { DEFAULT_EXPLAIN_CANDIDATES, type PolicyName, type RoutingPolicy } from './policy';
import { PrefixIndex } from './prefix-index';
import type { PrefixMatch } from './prefix-match';
import { SessionAffinityPolicy } from './session-affinity';
import { LeastLoadedPolicy, RandomPolicy, RoundRobinPolicy } from './simple-policies';
import { RouterStatsCounter, type RouterStats } from './stats';
import type { KvEventBatch, LoadReport, RouteRequest, SnapshotEntry, WorkerInfo } from './types';

export interface RouterOptions {
  /** Tokens per KV block; must match the workers. Required. */
  readonly blockSize: number;
  /** Policy choosing the decode worker. Default `kv-aware`. */
  readonly policy?: PolicyName;
  /** The index the gateway feeds with KV events; a fresh one by default. */
  readonly index?: PrefixIndex;
  /** The tracker the gateway feeds with load reports; a fresh one by default. */
  readonly loads?: LoadTracker;
  /** Cost weights shared by kv-aware, least-loaded and prefill placement; see `CostWeights`. */
  readonly weights?: Partial<CostWeights>;
  /** Overload thresholds shared by kv-aware (penalty), affinity (yield) and prefill placement (skip). */
  readonly overload?: Partial<OverloadThresholds>;
  readonly disagg?: Partial<DisaggConfig>;
  /** kv-aware softmax temperature in block-equivalents; 0 = argmin. Default 0. */
  readonly temperature?: number;
  /** Seed for `random` and for kv-aware sampling. Default 1. */
  readonly seed?: number;
  /** Candidates explained per decision (cost terms each). Default 8. */
  readonly explainCandidates?: number;
  /**
   * Count each routed request as in-flight load on its workers until their next load report (+1 running on
   * the decode worker, + uncached prompt tokens on whichever worker prefills). Without it, a burst between
   * two reports all lands on the same worker. Default true.
   */
  readonly optimisticAccounting?: boolean;
}

/** Raised when no decode-capable worker is live; the gateway maps it to 503. */
export class RouterError extends Error {
  constructor(
    readonly code: 'no_decode_worker',
    message: string,
  ) {
    super(message);
    this.name = 'RouterError';
  }
}

/**
 * Ties the index, load and policies together: choose a decode worker with the active policy, then place
 * prefill (conditional disaggregation). Membership comes from the caller (the registry), via `setWorkers`
 * or per call.
 */
export class Router {
  private readonly index: PrefixIndex;
  private readonly loads: LoadTracker;
  readonly blockSize: number;
  private policy: RoutingPolicy;
  private readonly policies: Readonly<Record<PolicyName, RoutingPolicy>>;
  private readonly placer: PrefillPlacer;
  private readonly optimistic: boolean;
  private readonly counters = new RouterStatsCounter();
  private workers: readonly WorkerInfo[] = [];
  private decodeCandidates: readonly WorkerInfo[] = [];
  private prefillWorkers: readonly WorkerInfo[] = [];

  constructor(opts: RouterOptions) {
    if (!(opts.blockSize > 0)) throw new RangeError(`blockSize must be positive, got ${opts.blockSize}`);
    this.blockSize = opts.blockSize;
    this.index = opts.index ?? new PrefixIndex();
    this.loads = opts.loads ?? new LoadTracker();
    this.optimistic = opts.optimisticAccounting ?? true;
    const explainCandidates = opts.explainCandidates ?? DEFAULT_EXPLAIN_CANDIDATES;
    const shared = { weights: opts.weights, overload: opts.overload, explainCandidates };
    this.policies = {
      'kv-aware': new KvAwarePolicy({ ...shared, temperature: opts.temperature, seed: opts.seed }),
      'round-robin': new RoundRobinPolicy(),
      'least-loaded': new LeastLoadedPolicy(shared),
      'session-affinity': new SessionAffinityPolicy({ yieldWhen: opts.overload, leastLoaded: shared }),
      random: new RandomPolicy(opts.seed),
    };
    this.policy = this.policies[opts.policy ?? 'kv-aware'];
    this.placer = new PrefillPlacer({ ...shared, config: opts.disagg });
  }

  // What the gateway learns from the cluster: KV events and snapshots (which worker holds which block),
  // load reports, departures. The router keeps them; nothing else writes its index or its load view.

  /** Applies one worker's KV event batch; 'gap' means a batch was missed: fetch that worker's snapshot. */
  applyKvBatch(batch: KvEventBatch): 'ok' | 'gap' {
    return this.index.applyBatch(batch);
  }

  /** Replaces what `holder` (a worker, or a kv-store node) holds with its snapshot taken at `seq`. */
  applySnapshot(holder: string, incarnation: string, seq: number, entries: readonly SnapshotEntry[]): 'ok' | 'gap' {
    return this.index.applySnapshot(holder, incarnation, seq, entries);
  }

  reportLoad(report: LoadReport): void {
    this.loads.report(report);
  }

  /** Forgets a departed worker or kv-store node: its blocks and its load. */
  removeHolder(holder: string): void {
    this.index.removeWorker(holder);
    this.loads.removeWorker(holder);
  }

  /** Holders whose index entry expired or fell behind: each wants a fresh snapshot. */
  holdersNeedingSnapshot(): string[] {
    return this.index.holdersNeedingSnapshot();
  }

  needsSnapshot(holder: string): boolean {
    return this.index.needsSnapshot(holder);
  }

  /** How the prefix index matches a chain of block hashes (debugging, tests). */
  matchPrefix(chain: readonly string[]): PrefixMatch {
    return this.index.matchPrefix(chain);
  }

  /** A worker's load as the router sees it: its last report plus what was routed to it since. */
  load(worker: string): WorkerLoad {
    return this.loads.get(worker);
  }

  /** Milliseconds since the worker's last load report. */
  loadAgeMs(worker: string): number {
    return this.loads.ageMs(worker);
  }

  get policyName(): PolicyName {
    return this.policy.name;
  }

  setPolicy(name: PolicyName): void {
    this.policy = this.policies[name];
  }

  /**
   * The live workers (from the registry). Pass a new array only when membership changes: per-worker lookups
   * are memoised on the array's identity. Keep the order stable for round-robin.
   */
  setWorkers(workers: readonly WorkerInfo[]): void {
    this.workers = workers;
    this.decodeCandidates = workers.filter((w) => w.role !== 'prefill');
    this.prefillWorkers = workers.filter((w) => w.role === 'prefill');
  }

  route(request: RouteRequest, workers?: readonly WorkerInfo[]): RoutingDecision {
    if (workers !== undefined && workers !== this.workers) this.setWorkers(workers);
    const candidates = this.decodeCandidates;
    if (candidates.length === 0) {
      this.counters.recordNoCandidate();
      throw new RouterError('no_decode_worker', 'no live decode or mixed worker to route to');
    }
    const { blockSize, loads, index, prefillWorkers } = this;
    const match = index.matchPrefix(request.chain);
    const matchKeys = index.slotsFor(candidates);
    const candidateLoads = loads.viewsFor(candidates);
    const chosen = this.policy.choose({ request, candidates, loads: candidateLoads, matchKeys, match, blockSize });
    const at = candidates.findIndex((c) => c.id === chosen.worker);
    if (at < 0) throw new Error(`policy ${this.policy.name} chose ${chosen.worker}, which is not a candidate`);
    const decode = candidates[at]!;
    const placed = this.placer.place({
      decode,
      decodeKey: matchKeys[at]!,
      request,
      match,
      prefillWorkers,
      prefillLoads: loads.viewsFor(prefillWorkers),
      prefillKeys: index.slotsFor(prefillWorkers),
      blockSize,
    });
    const prefillWorker = placed.placement.prefill === 'remote' ? placed.placement.worker : decode.id;
    const uncached = uncachedTokens(match, match.keyOf(prefillWorker), request.promptTokens, blockSize);

    const decision: RoutingDecision = {
      requestId: request.requestId,
      policy: this.policy.name,
      decodeWorker: decode.id,
      decodeRole: decode.role,
      prefill: placed.placement,
      requestedBlocks: request.chain.length,
      decodePrefix: credit(match, decode.id),
      prefillPrefix: credit(match, prefillWorker),
      uncachedTokens: uncached,
      reason: chosen.reason,
      candidates: chosen.scores,
      prefillCandidates: placed.scores,
    };
    if (this.optimistic) {
      const local = prefillWorker === decode.id;
      loads.addInFlight(decode.id, { running: 1, prefillTokens: local ? uncached : 0 });
      if (!local) loads.addInFlight(prefillWorker, { running: 0, prefillTokens: uncached });
    }
    this.counters.record(decision);
    return decision;
  }

  /** Undoes a decision's in-flight accounting: its request was not sent after all (refused at admission). */
  release(d: RoutingDecision): void {
    if (!this.optimistic) return;
    const local = d.prefill.prefill === 'local';
    this.loads.removeInFlight(d.decodeWorker, { running: 1, prefillTokens: local ? d.uncachedTokens : 0 });
    if (d.prefill.prefill === 'remote') this.loads.removeInFlight(d.prefill.worker, { running: 0, prefillTokens: d.uncachedTokens });
  }

  stats(): RouterStats {
    return this.counters.snapshot();
  }
}

function credit(match: PrefixMatch, worker: string): PrefixCredit {
  const key = match.keyOf(worker);
  const store = storeOnlyBlocks(match, key);
  return { blocks: match.blocksAt(key) + store, device: match.deviceAt(key), host: match.hostAt(key), disk: match.diskAt(key), store };
}
