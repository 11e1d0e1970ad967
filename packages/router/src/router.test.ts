import { describe, expect, it } from 'vitest';
import { explainDecision } from './decision';
import { PrefixIndex } from './prefix-index';
import { Router, RouterError } from './router';
import { chainOf, loadReport, stored } from './test-support';
import { STORE_HOLDER, type WorkerInfo } from './types';

const BS = 16;
const workers: WorkerInfo[] = [
  { id: 'd0', role: 'decode' },
  { id: 'd1', role: 'decode' },
  { id: 'p0', role: 'prefill' },
  { id: 'p1', role: 'prefill' },
];

function routerWith(holds: Record<string, number>, chain: readonly string[]): Router {
  const index = new PrefixIndex();
  for (const [w, n] of Object.entries(holds)) {
    index.applySnapshot(
      w,
      'i',
      0,
      chain.slice(0, n).map((hash) => ({ hash, tier: w === STORE_HOLDER ? ('store' as const) : ('device' as const) })),
    );
  }
  const router = new Router({ blockSize: BS, index });
  router.setWorkers(workers);
  return router;
}

describe('Router', () => {
  const chain = chainOf(1, 64);

  it('chooses a decode worker, places prefill remotely, and explains both', () => {
    const router = routerWith({ d1: 8, p1: 48, [STORE_HOLDER]: 16 }, chain);
    const d = router.route({ requestId: 'req-1', chain, promptTokens: 64 * BS + 5 });
    expect(d.decodeWorker).toBe('d1');
    expect(d.prefill).toEqual({ prefill: 'remote', worker: 'p1' });
    expect(d.decodePrefix).toEqual({ blocks: 16, device: 8, host: 0, disk: 0, store: 8 });
    expect(d.prefillPrefix).toEqual({ blocks: 48, device: 48, host: 0, disk: 0, store: 0 });
    expect(d.uncachedTokens).toBe(16 * BS + 5);
    expect(d.candidates.map((c) => c.worker)).toEqual(['d1', 'd0']);
    expect(d.candidates[0]!.terms).toMatchObject({ deviceHitBlocks: 8, storeHitBlocks: 8 });
    expect(d.prefillCandidates[0]!.worker).toBe('p1');
    const text = explainDecision(d);
    expect(text).toContain('request req-1 → decode d1 [decode] by kv-aware');
    expect(text).toContain('prefill remote on p1; reusable prefix 48/64 blocks');
    expect(text).toMatch(/decode d0: cost=\d/);
  });

  it('prefills a short uncached suffix locally', () => {
    const router = routerWith({ d0: 60 }, chain);
    const d = router.route({ requestId: 'r', chain, promptTokens: 64 * BS });
    expect(d.decodeWorker).toBe('d0');
    expect(d.prefill).toEqual({ prefill: 'local', reason: 'short-uncached-suffix' });
    expect(d.prefillPrefix.blocks).toBe(60);
    expect(d.uncachedTokens).toBe(4 * BS);
  });

  it('counts decisions by policy, placement, role and worker, and prefix totals', () => {
    const router = routerWith({ d0: 60, p0: 64 }, chain);
    router.route({ requestId: 'a', chain, promptTokens: 64 * BS });
    router.reportLoad(loadReport('d0', { running: 50 }));
    router.setPolicy('round-robin');
    router.route({ requestId: 'b', chain, promptTokens: 64 * BS }); // d0 by turn, 4 blocks uncached: local
    router.route({ requestId: 'c', chain, promptTokens: 64 * BS }); // d1, nothing cached: remote on p0
    const s = router.stats();
    expect(s.decisions).toBe(3);
    expect(s.byPolicy).toEqual({ 'kv-aware': 1, 'round-robin': 2 });
    expect(s.byDecodeRole).toEqual({ prefill: 0, decode: 3, mixed: 0 });
    expect(s.byPrefill).toEqual({ local: 2, remote: 1 });
    expect(s.localPrefillReasons['short-uncached-suffix']).toBe(2);
    expect(s.byWorker).toEqual({ d0: { decode: 2, prefill: 2 }, d1: { decode: 1, prefill: 0 }, p0: { decode: 0, prefill: 1 } });
    expect(s.prefixRequestedBlocks).toBe(192);
    expect(s.prefixMatchedBlocks).toBe(60 + 60 + 64);
    expect(s.prefixMatchedByTier.device).toBe(184);
  });

  it('counts routed requests as in-flight load until the next report', () => {
    const router = routerWith({}, chain);
    const first = router.route({ requestId: 'a', chain: chain.slice(0, 4), promptTokens: 4 * BS });
    const second = router.route({ requestId: 'b', chain: chain.slice(0, 4), promptTokens: 4 * BS });
    expect([first.decodeWorker, second.decodeWorker]).toEqual(['d0', 'd1']);
    expect(router.load('d0')).toMatchObject({ running: 1, queuedPrefillTokens: 4 * BS, inFlight: 1 });
    const remote = router.route({ requestId: 'c', chain, promptTokens: 64 * BS });
    expect(remote.prefill.prefill).toBe('remote');
    expect(router.load('p0').queuedPrefillTokens).toBe(64 * BS);
    // A request refused after routing (admission) takes its load back.
    router.release(remote);
    router.release(first);
    expect(router.load('p0').queuedPrefillTokens).toBe(0);
    expect(router.load('d0')).toMatchObject({ running: 0, queuedPrefillTokens: 0, inFlight: 0 });
    expect(router.load('d1')).toMatchObject({ running: 1, inFlight: 1 });
  });

  it('refuses when no decode-capable worker is live, and takes membership per call', () => {
    const router = new Router({ blockSize: BS });
    expect(() => router.route({ requestId: 'r', chain, promptTokens: 10 }, [{ id: 'p0', role: 'prefill' }])).toThrow(RouterError);
    expect(router.stats().noCandidate).toBe(1);
    const d = router.route({ requestId: 'r', chain, promptTokens: 10 }, [{ id: 'm0', role: 'mixed' }]);
    expect(d).toMatchObject({ decodeWorker: 'm0', decodeRole: 'mixed', prefill: { prefill: 'local', reason: 'mixed-worker' } });
  });

  it('sees workers that join the index or report load after the first decision', () => {
    const router = new Router({ blockSize: BS, optimisticAccounting: false });
    router.setWorkers([
      { id: 'd0', role: 'decode' },
      { id: 'd1', role: 'decode' },
    ]);
    const req = { requestId: 'r', chain, promptTokens: 64 * BS };
    expect(router.route(req).decodeWorker).toBe('d0'); // nothing known: tie broken by id
    router.applySnapshot(
      'd1',
      'i',
      0,
      chain.slice(0, 10).map((hash) => ({ hash, tier: 'device' as const })),
    );
    expect(router.route(req).decodePrefix.blocks).toBe(10);
    router.reportLoad(loadReport('d1', { running: 20 }));
    expect(router.route(req).decodeWorker).toBe('d0');
    router.removeHolder('d1');
    const d = router.route(req);
    expect(d.candidates.find((c) => c.worker === 'd1')!.terms).toMatchObject({ running: 0, deviceHitBlocks: 0 });
  });

  it('spreads load when every request shares the same prefix (hot-spot guard)', () => {
    const router = new Router({ blockSize: BS, optimisticAccounting: false });
    const ids = ['m0', 'm1', 'm2', 'm3'];
    router.setWorkers(ids.map((id) => ({ id, role: 'mixed' })));
    const seqs = new Map(ids.map((id) => [id, 0]));
    for (const id of ids) router.applySnapshot(id, 'i1', 0, []);
    const running = new Map(ids.map((id) => [id, 0]));
    const prefix = chainOf(1000, 32);
    for (let r = 0; r < 400; r++) {
      const c = [...prefix, ...chainOf(1_000_000 + r * 2, 2)];
      const d = router.route({ requestId: `r${r}`, chain: c, promptTokens: 34 * BS });
      const w = d.decodeWorker;
      const seq = seqs.get(w)! + 1;
      seqs.set(w, seq);
      router.applyKvBatch(stored(w, seq, c));
      running.set(w, running.get(w)! + 1); // long requests: nothing finishes
      router.reportLoad(loadReport(w, { running: running.get(w)! }));
    }
    const counts = [...running.values()];
    expect(Math.min(...counts)).toBeGreaterThan(60);
    // Imbalance stays within what the prefix is worth (32 blocks at decodeWeight 1).
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(33);
  });
});
