import type { PolicyName } from '@pdserve/router';
import type { Summary } from '../stats';
import type { CostModel } from './cost-model';
import type { EngineLimits } from './engine';

/** What one simulation produced; plain JSON. */
export interface SimReport {
  readonly config: {
    readonly prefillWorkers: number;
    readonly decodeWorkers: number;
    readonly decodeRole: 'decode' | 'mixed';
    readonly policy: PolicyName;
    readonly cacheTokens: number;
    readonly storeTokens: number | null;
    readonly blockSize: number;
    readonly timeScale: number;
    readonly lengthScale: number;
    readonly cost: CostModel;
    readonly engine: EngineLimits;
  };
  readonly requests: number;
  readonly completed: number;
  /** Offered load: requests / span of arrivals. */
  readonly offeredRequestsPerSec: number;
  /** First arrival to last completion, seconds of simulated time. */
  readonly makespanSec: number;
  readonly throughput: { readonly requestsPerSec: number; readonly outputTokensPerSec: number };
  readonly prefix: {
    readonly promptTokens: number;
    /** Reused from the prefilling worker's own cache. */
    readonly localHitTokens: number;
    /** Fetched from the kv-store. */
    readonly storeHitTokens: number;
    /** (local + store) / prompt tokens. */
    readonly hitRate: number;
    readonly localHitRate: number;
    readonly storeHitRate: number;
    readonly prefillTokensComputed: number;
  };
  /** KV tokens shipped prefill → decode worker. */
  readonly transferTokens: number;
  readonly latencyMs: { readonly ttft: Summary; readonly tbt: Summary; readonly e2e: Summary };
  readonly slo: { readonly ttftMs: number; readonly attainment: number } | null;
  readonly routing: {
    readonly remotePrefill: number;
    readonly localPrefill: number;
    /** Requests decoded per decode worker. */
    readonly decodePerWorker: { readonly min: number; readonly mean: number; readonly max: number };
  };
  /** Simulation effort: events handled and engine steps. */
  readonly events: number;
  readonly steps: number;
}
