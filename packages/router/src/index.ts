// @pdserve/router — the global prefix index and the routing policies (pure logic: no I/O).
//
// PrefixIndex   what we know: block hash → holders (worker + tier), fed by KV event batches and snapshots.
// LoadTracker   what we know: the latest load report per worker, plus in-flight work routed since.
// policies      what we decide: kv-aware (default), round-robin, least-loaded, session-affinity, random.
// PrefillPlacer conditional disaggregation: prefill local on the decode worker, or remote on a prefill worker.
// Router        ties them together and returns an explainable RoutingDecision; counts decisions.
export { STORE_HOLDER } from './types';
export { createRng, mix32 } from './rng';
export type { KvEvent, Tier, WorkerInfo, WorkerRole } from './types';
export { PrefixIndex } from './prefix-index';
export type { PrefixIndexOptions } from './prefix-index';
export { LoadTracker } from './load-tracker';
export type { LoadTrackerOptions } from './load-tracker';
export type { CostWeights, OverloadThresholds } from './cost';
export { POLICY_NAMES } from './policy';
export type { PolicyName } from './policy';
export type { DisaggConfig } from './disaggregation';
export { explainDecision } from './decision';
export type { RoutingDecision } from './decision';
export { Router, RouterError } from './router';
export type { RouterOptions } from './router';
export type { RouterStats } from './stats';
