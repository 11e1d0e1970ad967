import { describe, expect, it } from 'vitest';
import { PrefillPlacer, type PrefillInput } from './disaggregation';
import { LoadTracker } from './load-tracker';
import { lookupCandidates } from './policy';
import { PrefixIndex } from './prefix-index';
import { chainOf, loadReport } from './test-support';
import type { WorkerInfo } from './types';

const BS = 16;
const chain = chainOf(1, 64); // 1024 tokens

function setup(holds: Record<string, number>, promptTokens = 64 * BS) {
  const index = new PrefixIndex();
  for (const [w, n] of Object.entries(holds)) {
    index.applySnapshot(
      w,
      'i',
      0,
      chain.slice(0, n).map((hash) => ({ hash, tier: 'device' as const })),
    );
  }
  const loads = new LoadTracker();
  const base = (decode: WorkerInfo, prefillWorkers: WorkerInfo[]): PrefillInput => {
    const match = index.matchPrefix(chain);
    const { loads: prefillLoads, matchKeys: prefillKeys } = lookupCandidates(prefillWorkers, loads, match);
    const request = { requestId: 'r', chain, promptTokens };
    return { decode, decodeKey: match.keyOf(decode.id), request, match, prefillWorkers, prefillLoads, prefillKeys, blockSize: BS };
  };
  return { loads, base };
}

const d0: WorkerInfo = { id: 'd0', role: 'decode' };
const p0: WorkerInfo = { id: 'p0', role: 'prefill' };
const p1: WorkerInfo = { id: 'p1', role: 'prefill' };

describe('conditional disaggregation', () => {
  it('prefills locally on a mixed worker', () => {
    const { base } = setup({});
    const d = new PrefillPlacer().place(base({ id: 'm0', role: 'mixed' }, [p0]));
    expect(d.placement).toEqual({ prefill: 'local', reason: 'mixed-worker' });
  });

  it('prefills locally when the uncached suffix on the decode worker is short', () => {
    // 64 blocks prompt, 50 cached → 14 blocks = 224 tokens < 256
    const { base } = setup({ d0: 50 });
    const d = new PrefillPlacer().place(base(d0, [p0]));
    expect(d.placement).toEqual({ prefill: 'local', reason: 'short-uncached-suffix' });
    expect(d.decodeUncachedTokens).toBe(224);
    // ... and remotely once the threshold is lower than the suffix.
    expect(new PrefillPlacer({ config: { remotePrefillMinTokens: 200 } }).place(base(d0, [p0])).placement).toEqual({
      prefill: 'remote',
      worker: 'p0',
    });
  });

  it('prefills locally when there is no prefill worker', () => {
    const { base } = setup({});
    expect(new PrefillPlacer().place(base(d0, [])).placement).toEqual({ prefill: 'local', reason: 'no-prefill-worker' });
  });

  it('prefills locally when every prefill worker is busy or overloaded', () => {
    const { base, loads } = setup({});
    loads.report(loadReport('p0', { queuedPrefillTokens: 8193 }));
    loads.report(loadReport('p1', { freeBlocks: 0 }));
    expect(new PrefillPlacer().place(base(d0, [p0, p1])).placement).toEqual({ prefill: 'local', reason: 'prefill-pool-busy' });
    loads.report(loadReport('p0', { queuedPrefillTokens: 8192 }));
    expect(new PrefillPlacer().place(base(d0, [p0, p1])).placement).toEqual({ prefill: 'remote', worker: 'p0' });
  });

  it('picks the prefill worker with the best prefix and queue', () => {
    const { base, loads } = setup({ p1: 32 });
    const d = new PrefillPlacer().place(base(d0, [p0, p1]));
    expect(d.placement).toEqual({ prefill: 'remote', worker: 'p1' });
    expect(d.scores.map((s) => [s.worker, s.cost])).toEqual([
      ['p1', 32],
      ['p0', 64],
    ]);
    // A long queue on p1 outweighs its 32 cached blocks.
    loads.report(loadReport('p1', { queuedPrefillTokens: 40 * BS }));
    expect(new PrefillPlacer().place(base(d0, [p0, p1])).placement).toEqual({ prefill: 'remote', worker: 'p0' });
  });
});
