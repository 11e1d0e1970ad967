// One factory per service: registers that service's metrics on a registry and returns typed handles. Counters
// and gauges that an existing stats snapshot already tracks (engine, router, store tiers) can instead be read
// from that snapshot at scrape time, so the hot path pays nothing for them.
import { collectDefaultMetrics as promDefaultMetrics, type Registry } from 'prom-client';
import metricsPackage from '../package.json' with { type: 'json' };
import { COMMON_METRICS, GATEWAY_METRICS, KV_STORE_METRICS, WORKER_METRICS } from './catalog';
import { registerMetrics, setCounter, type MetricHandles } from './register';

export const METRIC_PREFIX = 'pdserve_';

/** The pdserve release (every workspace package carries the same version) that pdserve_build_info reports. */
export const PDSERVE_VERSION: string = metricsPackage.version;

/** The router's cumulative counters (structurally `RouterStats` from @pdserve/router). */
export interface RouterStatsSnapshot {
  readonly noCandidate: number;
  readonly byPolicy: Readonly<Record<string, number>>;
  readonly byPrefill: { readonly local: number; readonly remote: number };
  readonly localPrefillReasons: Readonly<Record<string, number>>;
  readonly byWorker: Readonly<Record<string, { readonly decode: number; readonly prefill: number }>>;
  readonly prefixRequestedBlocks: number;
  readonly prefixMatchedBlocks: number;
  readonly prefixMatchedByTier: Readonly<Record<string, number>>;
}

export interface GatewayMetricsOptions {
  /**
   * Reads the router counters (`pdserve_router_*`) from this snapshot at scrape time; then do not increment
   * those handles yourself. The policy label is the gateway's policy (or "multiple" if it has used several).
   */
  readonly routerStats?: () => RouterStatsSnapshot;
}

export type GatewayMetrics = MetricHandles<typeof GATEWAY_METRICS>;

export function gatewayMetrics(registry: Registry, opts: GatewayMetricsOptions = {}): GatewayMetrics {
  const stats = opts.routerStats;
  if (stats === undefined) return registerMetrics(registry, GATEWAY_METRICS);
  return registerMetrics(registry, GATEWAY_METRICS, {
    routerDecisions: (c) => {
      const s = stats();
      const used = Object.keys(s.byPolicy).filter((p) => (s.byPolicy[p] ?? 0) > 0);
      const policy = used.length === 1 ? used[0]! : used.length === 0 ? 'none' : 'multiple';
      setCounter(
        c,
        Object.entries(s.byWorker).flatMap(([worker, n]) => [
          [{ policy, role: 'decode', worker }, n.decode] as const,
          [{ policy, role: 'prefill', worker }, n.prefill] as const,
        ]),
      );
    },
    routerPrefill: (c) => {
      const s = stats();
      setCounter(c, [
        [{ mode: 'remote' }, s.byPrefill.remote],
        ...Object.entries(s.localPrefillReasons).map(([reason, n]) => [{ mode: 'local', reason }, n] as const),
      ]);
    },
    routerNoCandidate: (c) => setCounter(c, [[{}, stats().noCandidate]]),
    routerPrefixMatchedBlocks: (c) => setCounter(c, [[{}, stats().prefixMatchedBlocks]]),
    routerPrefixRequestedBlocks: (c) => setCounter(c, [[{}, stats().prefixRequestedBlocks]]),
    routerPrefixTierBlocks: (c) =>
      setCounter(
        c,
        Object.entries(stats().prefixMatchedByTier).map(([tier, n]) => [{ tier }, n] as const),
      ),
  });
}

/** The engine's state and cumulative counters (structurally `EngineStats` from @pdserve/engine). */
export interface EngineStatsSnapshot {
  readonly running: number;
  readonly waiting: number;
  readonly usedBlocks: number;
  readonly cachedBlocks: number;
  readonly totalBlocks: number;
  readonly prefixCacheHitTokens: number;
  readonly prefixCacheQueryTokens: number;
  readonly preemptions: number;
  readonly steps: number;
  readonly modelSeconds: number;
  readonly overheadSeconds: number;
  /** Speculative decoding's counters, when it is on. */
  readonly speculation?: {
    readonly draftTokens: number;
    readonly acceptedTokens: number;
    readonly verifiedSequenceSteps: number;
    readonly emittedTokens: number;
  };
}

export interface WorkerMetricsOptions {
  /**
   * Reads the engine gauges and counters (sequences, KV blocks, prefix cache, preemptions, steps, model and
   * overhead seconds) from this snapshot at scrape time, labelled with `model`; then do not set those handles
   * yourself.
   */
  readonly engineStats?: () => EngineStatsSnapshot;
  /** The served model id: the `model` label of the snapshot-backed series. */
  readonly model?: string;
}

export type WorkerMetrics = MetricHandles<typeof WORKER_METRICS>;

/** Metrics of an engine process: prefill, decode and mixed workers alike (the scrape job tells them apart). */
export function workerMetrics(registry: Registry, opts: WorkerMetricsOptions = {}): WorkerMetrics {
  const stats = opts.engineStats;
  if (stats === undefined) return registerMetrics(registry, WORKER_METRICS);
  const m = { model: opts.model ?? '' };
  return registerMetrics(registry, WORKER_METRICS, {
    runningSequences: (g) => g.set(m, stats().running),
    waitingSequences: (g) => g.set(m, stats().waiting),
    kvBlocksUsed: (g) => g.set(m, stats().usedBlocks),
    kvBlocksCached: (g) => g.set(m, stats().cachedBlocks),
    kvBlocksCapacity: (g) => g.set(m, stats().totalBlocks),
    prefixCacheHitTokens: (c) => setCounter(c, [[m, stats().prefixCacheHitTokens]]),
    prefixCacheQueryTokens: (c) => setCounter(c, [[m, stats().prefixCacheQueryTokens]]),
    preemptions: (c) => setCounter(c, [[m, stats().preemptions]]),
    steps: (c) => setCounter(c, [[m, stats().steps]]),
    modelSeconds: (c) => setCounter(c, [[m, stats().modelSeconds]]),
    overheadSeconds: (c) => setCounter(c, [[m, stats().overheadSeconds]]),
    specDraftTokens: (c) =>
      setCounter(
        c,
        spec(stats(), (s) => s.draftTokens),
      ),
    specAcceptedTokens: (c) =>
      setCounter(
        c,
        spec(stats(), (s) => s.acceptedTokens),
      ),
    specVerifySteps: (c) =>
      setCounter(
        c,
        spec(stats(), (s) => s.verifiedSequenceSteps),
      ),
    specEmittedTokens: (c) =>
      setCounter(
        c,
        spec(stats(), (s) => s.emittedTokens),
      ),
  });
  /** A speculation counter's one series, or none while speculation is off. */
  function spec(s: EngineStatsSnapshot, pick: (x: NonNullable<EngineStatsSnapshot['speculation']>) => number): [typeof m, number][] {
    return s.speculation ? [[m, pick(s.speculation)]] : [];
  }
}

/** One storage tier's occupancy. */
export interface StoreTierSnapshot {
  readonly tier: string;
  readonly blocks: number;
  readonly bytes: number;
  readonly capacityBytes: number;
  /** Cumulative counters of the tier, when the store keeps them (read at scrape time). */
  readonly hits?: number;
  readonly evictions?: number;
  readonly readBytes?: number;
  readonly writeBytes?: number;
}

export interface KvStoreMetricsOptions {
  /** Reads the tier gauges (blocks, bytes, capacity) and counters from this snapshot at scrape time. */
  readonly tiers?: () => readonly StoreTierSnapshot[];
  /** Cumulative reads for blocks held in no tier. */
  readonly misses?: () => number;
}

export type KvStoreMetrics = MetricHandles<typeof KV_STORE_METRICS>;

export function kvStoreMetrics(registry: Registry, opts: KvStoreMetricsOptions = {}): KvStoreMetrics {
  const tiers = opts.tiers;
  if (tiers === undefined) return registerMetrics(registry, KV_STORE_METRICS);
  return registerMetrics(registry, KV_STORE_METRICS, {
    blocks: (g) => tiers().forEach((t) => g.set({ tier: t.tier }, t.blocks)),
    bytes: (g) => tiers().forEach((t) => g.set({ tier: t.tier }, t.bytes)),
    capacityBytes: (g) => tiers().forEach((t) => g.set({ tier: t.tier }, t.capacityBytes)),
    hits: (c) =>
      setCounter(
        c,
        tiers().map((t) => [{ tier: t.tier }, t.hits ?? 0] as const),
      ),
    evictions: (c) =>
      setCounter(
        c,
        tiers().map((t) => [{ tier: t.tier }, t.evictions ?? 0] as const),
      ),
    readBytes: (c) =>
      setCounter(
        c,
        tiers().map((t) => [{ tier: t.tier }, t.readBytes ?? 0] as const),
      ),
    writeBytes: (c) =>
      setCounter(
        c,
        tiers().map((t) => [{ tier: t.tier }, t.writeBytes ?? 0] as const),
      ),
    ...(opts.misses === undefined ? {} : { misses: (c) => setCounter(c, [[{}, opts.misses!()]]) }),
  });
}

/**
 * What every service exports: pdserve_build_info, and prom-client's process and Node.js metrics (CPU, resident
 * memory, heap, event loop lag, GC) with the `pdserve_` prefix, on `registry`. Call once per registry.
 */
export function collectDefaultMetrics(registry: Registry): void {
  registerMetrics(registry, COMMON_METRICS).buildInfo.set({ version: PDSERVE_VERSION, nodejs_version: process.versions.node }, 1);
  promDefaultMetrics({ register: registry, prefix: METRIC_PREFIX });
}
