import type { CostWeights, DisaggConfig, OverloadThresholds, PolicyName } from '@pdserve/router';
import type { Trace } from '../trace';
import type { CostModel } from './cost-model';
import type { EngineLimits } from './engine';

/** The simulated cluster and workload. */
export interface SimOptions {
  readonly trace: Trace;
  /** Decode-capable workers; with no prefill workers they are `mixed`. Required. */
  readonly decodeWorkers: number;
  /** Dedicated prefill workers. Default 0. */
  readonly prefillWorkers?: number;
  /** The router's policy for the decode worker. Default `kv-aware`. */
  readonly policy?: PolicyName;
  /** Per-worker prefix cache (LRU), in tokens. Default 131 072 (the tiny model's 256 MiB KV pool). */
  readonly cacheTokens?: number;
  /** A global kv-store pool: blocks evicted from workers go there; hits cost a fetch. Default none. */
  readonly store?: { readonly capacityTokens: number } | null;
  /**
   * A Mooncake-style global pool: the workers' caches pooled, so that a worker fetches (at the transfer cost)
   * the blocks past its own prefix that any other worker caches. Same total capacity as local caches, reach
   * cluster-wide. Exclusive with `store`. Default false.
   */
  readonly globalPool?: boolean;
  readonly cost?: Partial<CostModel>;
  /**
   * All workers share one host that runs `parallelism` engine steps at once at full speed (a local cluster on
   * a few CPU cores): a step that starts while more workers are mid-step takes busy / parallelism times as
   * long. `pdserve calibrate` measures it. Default none: each worker has its own accelerator.
   */
  readonly sharedHost?: { readonly parallelism: number } | null;
  readonly engine?: Partial<EngineLimits>;
  /**
   * Workers report their load to the router every this many ms (a real worker every 250: the worker
   * package's LOAD_REPORT_INTERVAL_MS), the router counting what it routed in between as in flight: its
   * view of a worker is up to that old. Default 0: a report after every change of a worker's state.
   */
  readonly loadReportIntervalMs?: number;
  /** Router tunables passed through to `new Router` (see the router's docs). */
  readonly router?: {
    readonly weights?: Partial<CostWeights>;
    readonly overload?: Partial<OverloadThresholds>;
    readonly disagg?: Partial<DisaggConfig>;
    readonly temperature?: number;
    readonly seed?: number;
  };
  /** Arrival times × this (0.5 = twice the request rate). Default 1. */
  readonly timeScale?: number;
  /** Tokens per hash-id block, the simulated block size. Default: the trace's (512). */
  readonly blockScale?: number;
  /** Output lengths × this. Default 1. */
  readonly lengthScale?: number;
  readonly traceBlockSize?: number;
  readonly maxRequests?: number;
  /** Prompts are cut to this many tokens (as the replay's `maxInputLen`). Default: no limit. */
  readonly maxInputLen?: number;
  /** Output lengths are capped at this (as the replay's `maxTokens`). Default: no limit. */
  readonly maxTokens?: number;
  /** The report lists every request (worker, cached tokens, TTFT). Default false. */
  readonly recordRequests?: boolean;
  /** When set, the report gives the fraction of requests with TTFT ≤ this. */
  readonly sloTtftMs?: number;
}
