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
    /** Mooncake-style global pool: any worker fetches blocks any other worker caches. */
    readonly globalPool: boolean;
    /** Steps one shared host runs at once at full speed; null: each worker has its own device. */
    readonly hostParallelism: number | null;
    readonly blockSize: number;
    readonly timeScale: number;
    readonly lengthScale: number;
    readonly maxInputLen: number | null;
    readonly maxTokens: number | null;
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
    /** Fetched from the kv-store (or, with a global pool, from another worker's cache). */
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
  /** Every request, by index; only with `recordRequests`. */
  readonly perRequest?: readonly SimRequestRecord[];
}

/** One simulated request (with `recordRequests`). */
export interface SimRequestRecord {
  readonly index: number;
  /** Simulated time of its arrival, ms after the first request's. */
  readonly arrivalMs: number;
  readonly decodeWorker: string;
  readonly prefillWorker: string;
  readonly promptTokens: number;
  readonly cachedTokens: number;
  readonly outputTokens: number;
  readonly ttftMs: number;
  readonly e2eMs: number;
}
