// @pdserve/router — the global prefix index and the routing policies (pure logic: no I/O).
//
// PrefixIndex   what we know: block hash → holders (worker + tier), fed by KV event batches and snapshots.
// LoadTracker   what we know: the latest load report per worker, plus in-flight work routed since.
// policies      what we decide: kv-aware (default), round-robin, least-loaded, session-affinity, random.
// PrefillPlacer conditional disaggregation: prefill local on the decode worker, or remote on a prefill worker.
// Router        ties them together and returns an explainable RoutingDecision; counts decisions.
export { STORE_HOLDER } from './types';
export { createRng, mix32 } from './rng';
export type {
  KvEvent,
  KvEventBatch,
  LoadReport,
  RouteRequest,
  SnapshotEntry,
  Tier,
  WorkerInfo,
  WorkerRole,
} from './types';
export { PrefixIndex, DEFAULT_MAX_BUFFERED_BATCHES, DEFAULT_RESYNC_PERIOD_MS } from './prefix-index';
export type { HolderPhase, HolderStatus, PrefixIndexOptions } from './prefix-index';
export { PrefixMatch } from './prefix-match';
export type { WorkerPrefixMatch } from './prefix-match';
export { LoadTracker, UNKNOWN_LOAD } from './load-tracker';
export type { InFlightWork, LoadTrackerOptions, WorkerLoad } from './load-tracker';
export {
  DEFAULT_COST_WEIGHTS,
  DEFAULT_OVERLOAD,
  costTerms,
  isOverloaded,
  loadCost,
  storeOnlyBlocks,
  uncachedPrefillBlocks,
  uncachedTokens,
} from './cost';
export type { CostWeights, LoadView, OverloadThresholds } from './cost';
export { DEFAULT_EXPLAIN_CANDIDATES, POLICY_NAMES, lookupCandidates } from './policy';
export type { CandidateScore, CostTerms, PolicyDecision, PolicyInput, PolicyName, RoutingPolicy } from './policy';
export { KvAwarePolicy } from './kv-aware';
export type { KvAwareOptions } from './kv-aware';
export { LeastLoadedPolicy, RandomPolicy, RoundRobinPolicy } from './simple-policies';
export type { LeastLoadedOptions } from './simple-policies';
export { SessionAffinityPolicy } from './session-affinity';
export type { SessionAffinityOptions } from './session-affinity';
export { DEFAULT_DISAGG, PrefillPlacer } from './disaggregation';
export type {
  DisaggConfig,
  LocalPrefillReason,
  PrefillDecision,
  PrefillInput,
  PrefillPlacement,
  PrefillPlacerOptions,
} from './disaggregation';
export { explainDecision } from './decision';
export type { PrefixCredit, RoutingDecision } from './decision';
export { Router, RouterError } from './router';
export type { RouterOptions } from './router';
export type { RouterStats } from './stats';
