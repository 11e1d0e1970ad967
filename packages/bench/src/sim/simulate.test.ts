import { describe, expect, it } from 'vitest';
import { MOONCAKE_TRACE, parseTrace, readTrace, type Trace } from '../trace';
import { BlockLru } from './block-lru';
import { findCapacity } from './capacity';
import { EventQueue } from './event-queue';
import { simulate } from './simulate';
import { routerHash } from './workload';

const lines = (rows: readonly object[]): Trace => parseTrace(rows.map((r) => JSON.stringify(r)).join('\n'));

describe('EventQueue and BlockLru', () => {
  it('pops by time, ties in insertion order', () => {
    const q = new EventQueue<string>();
    const input: [number, string][] = [
      [5, 'a'],
      [1, 'b'],
      [3, 'c'],
      [1, 'd'],
      [9, 'e'],
      [3, 'f'],
      [0, 'g'],
    ];
    for (const [t, x] of input) q.push(t, x);
    const out: string[] = [];
    while (q.size > 0) out.push(q.pop()!);
    expect(out).toEqual(['g', 'b', 'd', 'c', 'f', 'a', 'e']);
    expect(q.pop()).toBeUndefined();
    expect(q.peekTime()).toBe(Number.POSITIVE_INFINITY);
  });

  it('evicts least recently used blocks, a prefix tail before its head; a hit is a use', () => {
    const lru = new BlockLru(3);
    expect(lru.insert([1, 2, 3])).toEqual({ stored: [1, 2, 3], evicted: [] });
    expect(lru.insert([4])).toEqual({ stored: [4], evicted: [3] });
    expect(lru.leading([2, 9, 1])).toBe(1);
    expect(lru.insert([5])).toEqual({ stored: [5], evicted: [1] });
    expect(lru.leading([2, 4, 5])).toBe(3);
    expect(routerHash(255)).toBe('00000000000000ff');
  });
});

describe('simulate', () => {
  it('charges the cost model exactly on a hand-computed case', () => {
    // Two identical requests of 1024 tokens (two 512-token blocks), 3 output tokens, one mixed worker.
    const trace = lines([
      { timestamp: 0, input_length: 1024, output_length: 3, hash_ids: [7, 8] },
      { timestamp: 1000, input_length: 1024, output_length: 3, hash_ids: [7, 8] },
    ]);
    const r = simulate({ trace, decodeWorkers: 1 });
    // Prefill 1024 × 0.25 ms = 256 ms; two decode steps of 3 + 0.2 ms. The repeat reuses whole blocks only,
    // leaving at least one token to compute (as the engine): block 7, 512 tokens: 512 × 0.25 ms + 512 × 0.005 ms = 130.56 ms.
    expect(r.latencyMs.ttft.min).toBeCloseTo(130.56, 6);
    expect(r.latencyMs.ttft.max).toBeCloseTo(256, 6);
    expect(r.latencyMs.tbt).toMatchObject({ count: 4 });
    expect(r.latencyMs.tbt.mean).toBeCloseTo(3.2, 9);
    expect(r.latencyMs.e2e.max).toBeCloseTo(262.4, 6);
    expect(r.prefix).toMatchObject({ promptTokens: 2048, localHitTokens: 512, prefillTokensComputed: 1536 });
  });

  it('slows steps that share a host beyond its parallelism', () => {
    // Two 256-token prompts at once on two workers: 256 × 0.25 ms = 64 ms each on separate devices; on one
    // host that runs one step at a time, the second step to start takes twice as long.
    const trace = lines([
      { timestamp: 0, input_length: 256, output_length: 1, hash_ids: [1] },
      { timestamp: 0, input_length: 256, output_length: 1, hash_ids: [2] },
    ]);
    const apart = simulate({ trace, decodeWorkers: 2, policy: 'round-robin' });
    expect([apart.latencyMs.ttft.min, apart.latencyMs.ttft.max]).toEqual([64, 64]);
    const shared = simulate({ trace, decodeWorkers: 2, policy: 'round-robin', sharedHost: { parallelism: 1 } });
    expect(shared.latencyMs.ttft.min).toBeCloseTo(64, 9);
    expect(shared.latencyMs.ttft.max).toBeCloseTo(128, 9);
    expect(shared.config.hostParallelism).toBe(1);
  });

  it('load reports every loadReportIntervalMs: the router counts a finished request as in flight until the next', () => {
    // r0 caches P = [1,2,3,4] on a worker; r1 (sharing P's first block) follows it there and is done by 10.07 s;
    // r2 (P again) arrives at 10.1 s. With a fresh view that worker is idle and r2 reuses 3 of P's blocks; with a
    // report due only at 10.25 s, r1 still counts there (1 running + 3 queued blocks = P's credit), so the tie
    // goes to the worker running nothing, which has no block of P.
    const trace = lines([
      { timestamp: 0, input_length: 2048, output_length: 1, hash_ids: [1, 2, 3, 4] },
      { timestamp: 10_010, input_length: 2048, output_length: 1, hash_ids: [1, 9, 10, 11] },
      { timestamp: 10_100, input_length: 2048, output_length: 1, hash_ids: [1, 2, 3, 4] },
    ]);
    const cost = { prefillSecondsPerToken: 0.001, decodeStep: { baseSeconds: 0.001, perSequenceSeconds: 0, perContextTokenSeconds: 0 } };
    const base = { trace, decodeWorkers: 2, blockScale: 16, cost, recordRequests: true } as const;
    const fresh = simulate(base);
    const late = simulate({ ...base, loadReportIntervalMs: 250 });
    const worker = (r: typeof fresh, i: number) => r.perRequest![i]!.decodeWorker;
    expect(worker(fresh, 1)).toBe(worker(fresh, 0));
    expect(worker(late, 1)).toBe(worker(late, 0));
    expect(worker(fresh, 2)).toBe(worker(fresh, 0));
    expect(fresh.perRequest![2]!.cachedTokens).toBe(48);
    expect(worker(late, 2)).not.toBe(worker(late, 0));
    expect(late.perRequest![2]!.cachedTokens).toBe(0);
    expect(late.completed).toBe(3); // and the periodic reports stop once the work is done
    expect(simulate({ ...base, loadReportIntervalMs: 250 })).toEqual(late);
  });

  it('replays a slice of the shared trace, deterministically, and kv-aware beats round-robin on reuse', async () => {
    const trace = await readTrace(MOONCAKE_TRACE);
    const base = { trace, decodeWorkers: 4, maxRequests: 300, blockScale: 16, cacheTokens: 16_384 } as const;
    const kv = simulate(base);
    expect(kv.requests).toBe(300);
    expect(kv.completed).toBe(300);
    expect(kv.latencyMs.ttft.count).toBe(300);
    const p = kv.prefix;
    expect(p.localHitTokens + p.storeHitTokens + p.prefillTokensComputed).toBe(p.promptTokens);
    expect(kv.latencyMs.tbt.min!).toBeGreaterThanOrEqual(3.2 - 1e-9);
    expect(simulate(base)).toEqual(kv);
    const rr = simulate({ ...base, policy: 'round-robin' });
    expect(kv.prefix.hitRate).toBeGreaterThan(rr.prefix.hitRate);
    expect(rr.routing.decodePerWorker).toEqual({ min: 75, mean: 75, max: 75 });
    // With small worker caches, blocks evicted to the store come back as store hits.
    const small = simulate({ ...base, cacheTokens: 2048 });
    const stored = simulate({ ...base, cacheTokens: 2048, store: { capacityTokens: 1_000_000 } });
    expect(stored.prefix.storeHitTokens).toBeGreaterThan(0);
    expect(stored.prefix.hitRate).toBeGreaterThan(small.prefix.hitRate);
  });

  it('disaggregates: remote prefill ships KV to decode workers', async () => {
    const trace = await readTrace(MOONCAKE_TRACE);
    const r = simulate({ trace, decodeWorkers: 3, prefillWorkers: 2, maxRequests: 200, blockScale: 16, sloTtftMs: 500 });
    expect(r.completed).toBe(200);
    expect(r.config.decodeRole).toBe('decode');
    expect(r.routing.remotePrefill).toBeGreaterThan(0);
    expect(r.transferTokens).toBeGreaterThan(0);
    expect(r.slo!.attainment).toBeGreaterThan(0);
    expect(JSON.parse(JSON.stringify(r))).toEqual(r);
  });

  it('finds capacity under a TTFT SLO in bounded iterations', async () => {
    const trace = await readTrace(MOONCAKE_TRACE);
    const opts = { trace, decodeWorkers: 2, maxRequests: 150, blockScale: 16 } as const;
    // The longest prompts alone take ~310 ms to prefill, so p90 ≤ 500 ms is tight and 3 s loose.
    const tight = findCapacity(opts, { sloTtftMs: 500, iterations: 8 });
    const loose = findCapacity(opts, { sloTtftMs: 3000, iterations: 8 });
    for (const c of [tight, loose]) {
      expect(c.bound).toBe('found');
      expect(c.probes.length).toBeLessThanOrEqual(8);
      const best = c.probes.find((p) => p.timeScale === c.timeScale)!;
      expect(best.meets).toBe(true);
      expect(best.ttftMs!).toBeLessThanOrEqual(c.sloTtftMs);
    }
    expect(loose.requestsPerSec!).toBeGreaterThan(tight.requestsPerSec!);
    expect(findCapacity(opts, { sloTtftMs: 100, iterations: 3 })).toMatchObject({ bound: 'fails-at-slowest', requestsPerSec: null });
  });
});
