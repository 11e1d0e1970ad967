// The status assembly from hand-made inputs: which records count, what each number is derived from, how
// an unreachable node shows, and what /status.json answers when the registry cannot be read.
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { ServiceRecord } from '@pdserve/control-plane';
import type { StoreStatsResponseMsg, TierStatsMsg } from '@pdserve/kv-store';
import type { RouterStats } from '@pdserve/router';
import type { StatsResponseMsg } from '@pdserve/worker';
import {
  assembleStatus,
  collectStatus,
  GrpcStatusProbes,
  relevantMembers,
  type Probe,
  type StatusProbes,
  type StatusSource,
} from './status';
import { statusRoutes } from './status-page';

const record = (id: string, role: ServiceRecord['role'], over: Partial<ServiceRecord> = {}): ServiceRecord => ({
  id,
  role,
  grpcAddress: `${id}.local:50051`,
  adminAddress: '',
  model: 'tiny',
  capacity: { totalBlocks: 100, blockSize: 16, maxNumSeqs: 8 },
  incarnation: `inc-${id}`,
  startedAt: Date.UTC(2026, 0, 1),
  ...over,
});

const workerStats = (over: Partial<StatsResponseMsg> = {}): StatsResponseMsg => ({
  running: 2,
  waiting: 1,
  free_blocks: 70,
  used_blocks: 25,
  cached_blocks: 5,
  total_blocks: 100,
  prefix_cache_hit_tokens: 48,
  prefix_cache_query_tokens: 64,
  prefill_tokens_computed: 16,
  preemptions: 0,
  queued_prefill_tokens: 0,
  import_fallbacks: 0,
  prefetched_tokens: 0,
  prefetch_rejects: 0,
  store_prefetched_blocks: 0,
  store_offloaded_blocks: 0,
  store_offload_dropped: 0,
  ...over,
});

const tier = (over: Partial<TierStatsMsg>): TierStatsMsg => ({
  blocks: 0,
  bytes: 0,
  used_bytes: 0,
  capacity_bytes: 0,
  hits: 0,
  misses: 0,
  evictions: 0,
  read_bytes: 0,
  write_bytes: 0,
  corrupt_dropped: 0,
  ...over,
});

const storeStats = (memory: TierStatsMsg, disk: TierStatsMsg | null): StoreStatsResponseMsg => ({
  memory,
  disk,
  active_puts: 0,
  committed_puts: 0,
  revoked_puts: 0,
  reclaimed_puts: 0,
  active_leases: 3,
  active_pins: 1,
  demotions: 0,
  promotions: 0,
  refused_transfers: 0,
  blocks_sent: 0,
});

const routerStats = (over: Partial<RouterStats> = {}): RouterStats => ({
  decisions: 4,
  noCandidate: 1,
  byPolicy: { 'kv-aware': 4 },
  byDecodeRole: { prefill: 0, decode: 4, mixed: 0 },
  byPrefill: { local: 1, remote: 3 },
  localPrefillReasons: { 'mixed-worker': 0, 'short-uncached-suffix': 1, 'no-prefill-worker': 0, 'prefill-pool-busy': 0 },
  byWorker: { d0: { decode: 4, prefill: 1 }, p0: { decode: 0, prefill: 3 } },
  prefixRequestedBlocks: 10,
  prefixMatchedBlocks: 4,
  prefixMatchedByTier: { device: 4, host: 0, disk: 0, store: 0 },
  ...over,
});

describe('relevantMembers', () => {
  it("keeps this model's workers and the kv-stores serving it or every model, sorted by id", () => {
    const members = [
      record('p0', 'prefill'),
      record('gw', 'gateway'),
      record('other', 'decode', { model: 'big' }),
      record('d1', 'decode'),
      record('d0', 'mixed'),
      record('s-any', 'kv-store', { model: '*' }),
      record('s-big', 'kv-store', { model: 'big' }),
      record('s-tiny', 'kv-store'),
    ];
    const { workers, stores } = relevantMembers('tiny', members);
    expect(workers.map((r) => r.id)).toEqual(['d0', 'd1', 'p0']);
    expect(stores.map((r) => r.id)).toEqual(['s-any', 's-tiny']);
  });
});

describe('assembleStatus', () => {
  it('derives usage and hit rates from each node, routing counts from the router', () => {
    const s = assembleStatus({
      model: 'tiny',
      now: Date.UTC(2026, 0, 2),
      ready: true,
      routerStats: routerStats(),
      workers: [
        { record: record('d0', 'decode'), probe: { health: 'serving', stats: workerStats() }, routed: true, loadReportAgeMs: 123.4 },
        {
          record: record('p0', 'prefill'),
          probe: { health: 'unreachable', error: 'no answer within 1500 ms' },
          routed: false,
          loadReportAgeMs: undefined,
        },
      ],
      stores: [
        {
          record: record('s0', 'kv-store'),
          probe: {
            health: 'draining',
            stats: storeStats(tier({ blocks: 4, used_bytes: 256, capacity_bytes: 1024, hits: 3, misses: 1, evictions: 2 }), tier({})),
          },
        },
      ],
    });
    expect(s.generatedAt).toBe('2026-01-02T00:00:00.000Z');
    expect(s.gateway).toEqual({ ready: true, routing: { decisions: 4, noCandidate: 1, prefixHitRate: 0.4, byPolicy: { 'kv-aware': 4 } } });
    const [d0, p0] = s.workers;
    expect(d0).toMatchObject({
      id: 'd0',
      role: 'decode',
      health: 'serving',
      routed: true,
      error: null,
      running: 2,
      waiting: 1,
      kv: { usedBlocks: 25, cachedBlocks: 5, totalBlocks: 100, usage: 0.25 },
      prefixCache: { hitTokens: 48, queryTokens: 64, hitRate: 0.75 },
      loadReportAgeMs: 123,
      picks: { decode: 4, prefill: 1 },
      startedAt: '2026-01-01T00:00:00.000Z',
    });
    expect(p0).toMatchObject({
      health: 'unreachable',
      error: 'no answer within 1500 ms',
      routed: false,
      running: null,
      kv: null,
      prefixCache: null,
      loadReportAgeMs: null,
      picks: { decode: 0, prefill: 3 },
    });
    // A tier without capacity (no disk configured) is not shown.
    expect(s.kvStores[0]).toMatchObject({ id: 's0', health: 'draining', activeLeases: 3, activePins: 1 });
    expect(s.kvStores[0]!.tiers).toEqual([
      { tier: 'memory', blocks: 4, usedBytes: 256, capacityBytes: 1024, usage: 0.25, hits: 3, misses: 1, hitRate: 0.75, evictions: 2 },
    ]);
  });

  it('has no rates before anything was asked, and never reads a worker id from the prototype', () => {
    const s = assembleStatus({
      model: 'tiny',
      now: 0,
      ready: false,
      routerStats: routerStats({ decisions: 0, prefixRequestedBlocks: 0, prefixMatchedBlocks: 0, byWorker: {} }),
      workers: [
        {
          record: record('constructor', 'decode', { startedAt: Number.MAX_VALUE }),
          probe: { health: 'serving', stats: workerStats({ prefix_cache_query_tokens: 0, total_blocks: 0, used_blocks: 0 }) },
          routed: true,
          loadReportAgeMs: undefined,
        },
      ],
      stores: [],
    });
    expect(s.gateway.routing.prefixHitRate).toBeNull();
    expect(s.workers[0]).toMatchObject({
      picks: { decode: 0, prefill: 0 },
      prefixCache: { hitRate: null },
      kv: { usage: null },
      startedAt: '',
    });
  });
});

/** A source and probes by hand: `members` may throw, probes answer from a table by id. */
function fakes(
  members: () => Promise<ServiceRecord[]>,
  answers: Record<string, Probe<StatsResponseMsg>>,
): { source: StatusSource; probes: StatusProbes & { retained: string[][]; calls: number } } {
  const probes = {
    retained: [] as string[][],
    calls: 0,
    worker: async (r: ServiceRecord) => {
      probes.calls++;
      await new Promise((res) => setTimeout(res, 5));
      return answers[r.id] ?? { health: 'unreachable' as const, error: 'unknown' };
    },
    store: async (): Promise<Probe<StoreStatsResponseMsg>> => ({
      health: 'serving',
      stats: storeStats(tier({ capacity_bytes: 10 }), null),
    }),
    retain: (live: ReadonlySet<string>) => void probes.retained.push([...live].sort()),
    close: () => undefined,
  };
  const source: StatusSource = {
    model: 'tiny',
    members,
    isRouted: (r) => r.id === 'd0',
    loadReportAgeMs: () => 50,
    routerStats: () => routerStats(),
    ready: () => true,
  };
  return { source, probes };
}

describe('collectStatus and the routes', () => {
  it('probes every relevant node, keeps clients only for them, and shares one collection among concurrent callers', async () => {
    const { source, probes } = fakes(async () => [record('d0', 'decode'), record('gw', 'gateway'), record('s0', 'kv-store')], {
      d0: { health: 'serving', stats: workerStats() },
    });
    const s = await collectStatus(source, probes);
    expect(s.workers.map((w) => [w.id, w.health, w.routed, w.loadReportAgeMs])).toEqual([['d0', 'serving', true, 50]]);
    expect(s.kvStores.map((n) => n.id)).toEqual(['s0']);
    expect(probes.retained).toEqual([['d0.local:50051', 's0.local:50051']]);
    const routes = statusRoutes(source, probes);
    probes.calls = 0;
    const [a, b] = await Promise.all([routes.current(), routes.current()]);
    expect(a).toBe(b);
    expect(probes.calls).toBe(1);
  });

  it('serves the page and the JSON with security headers; a registry it cannot read is a 503, not a crash', async () => {
    let fail = false;
    const { source, probes } = fakes(async () => {
      if (fail) throw new Error('redis is down');
      return [record('d0', 'decode')];
    }, {});
    const routes = statusRoutes(source, probes).routes;
    const page = await routes.get('/status')!();
    expect(page.status).toBe(200);
    expect(page.contentType).toBe('text/html; charset=utf-8');
    expect(page.headers?.['content-security-policy']).toMatch(/default-src 'none'; script-src 'sha256-[A-Za-z0-9+/=]+'/);
    expect(page.body).toContain('status.json');
    const ok = await routes.get('/status.json')!();
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toMatchObject({ object: 'pdserve.status', model: 'tiny', workers: [{ id: 'd0', health: 'unreachable' }] });
    fail = true;
    const down = await routes.get('/status.json')!();
    expect(down.status).toBe(503);
    expect(JSON.parse(down.body)).toEqual({
      error: { message: "cannot read the cluster's state: redis is down", type: 'unavailable', code: 'status_unavailable' },
    });
  });
});

describe('GrpcStatusProbes', () => {
  it('a node that accepts connections but never answers is unreachable after the timeout; a closed prober dials nothing', async () => {
    const silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as { port: number }).port;
    const probes = new GrpcStatusProbes(300);
    try {
      const [w, s] = await Promise.all([
        probes.worker(record('w', 'decode', { grpcAddress: `127.0.0.1:${port}` })),
        probes.store(record('s', 'kv-store', { grpcAddress: `127.0.0.1:${port}` })),
      ]);
      expect(w).toEqual({ health: 'unreachable', error: 'no answer within 300 ms' });
      expect(s).toEqual({ health: 'unreachable', error: 'no answer within 300 ms' });
      probes.close();
      expect(await probes.worker(record('w2', 'decode', { grpcAddress: `127.0.0.1:${port}` }))).toEqual({
        health: 'unreachable',
        error: 'the gateway is closing',
      });
    } finally {
      probes.close();
      silent.close();
    }
  });
});
