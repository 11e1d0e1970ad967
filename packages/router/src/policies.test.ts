import { describe, expect, it } from 'vitest';
import { DEFAULT_COST_WEIGHTS, isOverloaded, DEFAULT_OVERLOAD } from './cost';
import { KvAwarePolicy } from './kv-aware';
import { LoadTracker } from './load-tracker';
import { lookupCandidates, type PolicyInput } from './policy';
import { PrefixIndex, type PrefixMatch } from './prefix-index';
import { SessionAffinityPolicy } from './session-affinity';
import { LeastLoadedPolicy, RandomPolicy, RoundRobinPolicy } from './simple-policies';
import { chainOf, loadReport } from './test-support';
import { STORE_HOLDER, type Tier, type WorkerInfo } from './types';

const BS = 16;
const decoders = (...ids: string[]): WorkerInfo[] => ids.map((id) => ({ id, role: 'decode' }));

/** An index where each listed worker holds the first `n` blocks of `chain` in `tier`. */
function matchOf(chain: readonly string[], holds: Record<string, [number, Tier]>): PrefixMatch {
  const index = new PrefixIndex();
  for (const [w, [n, tier]] of Object.entries(holds)) {
    index.applySnapshot(
      w,
      'i',
      0,
      chain.slice(0, n).map((hash) => ({ hash, tier })),
    );
  }
  return index.matchPrefix(chain);
}

function input(candidates: WorkerInfo[], match: PrefixMatch, loads: LoadTracker, extra: Partial<PolicyInput['request']> = {}): PolicyInput {
  const request = { requestId: 'r', chain: [], promptTokens: 16 * BS, ...extra };
  return { request, candidates, match, blockSize: BS, ...lookupCandidates(candidates, loads, match) };
}

describe('kv-aware', () => {
  const chain = chainOf(1, 16);

  it('prefers the worker holding the longest prefix when loads are equal', () => {
    const m = matchOf(chain, { a: [4, 'device'], b: [12, 'device'] });
    const d = new KvAwarePolicy().choose(input(decoders('a', 'b', 'c'), m, new LoadTracker()));
    expect(d.worker).toBe('b');
    expect(d.scores.map((s) => s.worker)).toEqual(['b', 'a', 'c']);
    expect(d.scores[0]!.terms).toMatchObject({ cost: 4, uncachedPrefillBlocks: 4, deviceHitBlocks: 12 });
  });

  it('credits tiers device > host > disk > store', () => {
    const index = new PrefixIndex();
    const tiers: Tier[] = ['device', 'host', 'disk'];
    tiers.forEach((tier, i) =>
      index.applySnapshot(
        `w${i}`,
        'i',
        0,
        chain.slice(0, 8).map((hash) => ({ hash, tier })),
      ),
    );
    index.applySnapshot(
      STORE_HOLDER,
      'i',
      0,
      chain.slice(0, 8).map((hash) => ({ hash, tier: 'store' as const })),
    );
    index.applySnapshot('w3', 'i', 0, []);
    const d = new KvAwarePolicy().choose(input(decoders('w3', 'w2', 'w1', 'w0'), index.matchPrefix(chain), new LoadTracker()));
    expect(d.scores.map((s) => s.worker)).toEqual(['w0', 'w1', 'w2', 'w3']);
    const w = DEFAULT_COST_WEIGHTS;
    expect(d.scores.map((s) => s.cost)).toEqual([8, 16 - 8 * w.hostCredit, 16 - 8 * w.diskCredit, 16 - 8 * w.storeCredit]);
    expect(d.scores[3]!.terms.storeHitBlocks).toBe(8);
  });

  it('trades prefix credit against queued prefill and running load', () => {
    const m = matchOf(chain, { a: [8, 'device'] });
    const loads = new LoadTracker();
    loads.report(loadReport('a', { running: 3, queuedPrefillTokens: 4 * BS }));
    // a: 8 uncached + 4 queued + 3 running = 15 < b: 16
    expect(new KvAwarePolicy().choose(input(decoders('a', 'b'), m, loads)).worker).toBe('a');
    loads.report(loadReport('a', { running: 5, queuedPrefillTokens: 4 * BS }));
    // a: 17 > b: 16
    expect(new KvAwarePolicy().choose(input(decoders('a', 'b'), m, loads)).worker).toBe('b');
  });

  it('penalises overloaded workers (no free blocks, or too many waiting)', () => {
    const m = matchOf(chain, { a: [16, 'device'], b: [16, 'device'] });
    const loads = new LoadTracker();
    loads.report(loadReport('a', { freeBlocks: 0 }));
    loads.report(loadReport('b', { waiting: DEFAULT_OVERLOAD.maxWaiting + 1 }));
    const d = new KvAwarePolicy().choose(input(decoders('a', 'b', 'c'), m, loads));
    expect(d.worker).toBe('c');
    expect(isOverloaded(loads.get('a'), DEFAULT_OVERLOAD)).toBe(true);
    expect(d.scores.find((s) => s.worker === 'a')!.terms.overloaded).toBe(1);
  });

  it('breaks ties by fewer running sequences, then by id', () => {
    const m = matchOf(chain, {});
    const loads = new LoadTracker();
    // Equal cost: c has one more running but one less waiting.
    loads.report(loadReport('c', { running: 1 }));
    loads.report(loadReport('b', { waiting: 1 }));
    loads.report(loadReport('a', { waiting: 1 }));
    expect(new KvAwarePolicy().choose(input(decoders('c', 'b', 'a'), m, loads)).worker).toBe('a');
  });

  it('samples by softmax when temperature > 0, reproducibly for a seed', () => {
    const m = matchOf(chain, { a: [1, 'device'] });
    const run = (seed: number): string[] => {
      const p = new KvAwarePolicy({ temperature: 1, seed });
      return Array.from({ length: 400 }, () => p.choose(input(decoders('a', 'b'), m, new LoadTracker())).worker);
    };
    const picks = run(7);
    expect(run(7)).toEqual(picks);
    // cost a = 15, b = 16: P(a) = 1 / (1 + e^-1) ≈ 0.73
    const share = picks.filter((w) => w === 'a').length / picks.length;
    expect(share).toBeGreaterThan(0.63);
    expect(share).toBeLessThan(0.83);
  });

  it('explains at most explainCandidates candidates, plus the chosen one', () => {
    const ids = Array.from({ length: 20 }, (_, i) => `w${String(i).padStart(2, '0')}`);
    const d = new KvAwarePolicy({ explainCandidates: 3 }).choose(input(decoders(...ids), matchOf(chain, {}), new LoadTracker()));
    expect(d.scores).toHaveLength(3);
    expect(new Set(d.scores.map((s) => s.worker)).size).toBe(3);
    expect(d.scores[0]!.worker).toBe(d.worker);
    expect(d.reason).toMatch(/min cost 16 of 20/);
  });

  it('spreads prompts nobody holds over the cluster, and sends equal prompts to one worker', () => {
    const ids = Array.from({ length: 16 }, (_, i) => `w${String(i).padStart(2, '0')}`);
    const policy = new KvAwarePolicy();
    const pick = (first: number): string =>
      policy.choose(input(decoders(...ids), matchOf(chainOf(first, 2), {}), new LoadTracker(), { chain: chainOf(first, 2) })).worker;
    const picks = Array.from({ length: 64 }, (_, i) => pick(1000 + i));
    // Lowest-id tie-breaking would put all 64 on w00.
    expect(new Set(picks).size).toBeGreaterThanOrEqual(10);
    expect(pick(1000)).toBe(picks[0]);
  });
});

describe('round-robin, random, least-loaded', () => {
  const m = matchOf(chainOf(1, 2), {});

  it('round-robin cycles through the candidates in order', () => {
    const p = new RoundRobinPolicy();
    const picks = Array.from({ length: 7 }, () => p.choose(input(decoders('a', 'b', 'c'), m, new LoadTracker())).worker);
    expect(picks).toEqual(['a', 'b', 'c', 'a', 'b', 'c', 'a']);
  });

  it('random is reproducible for a seed and reaches every candidate', () => {
    const draw = (seed: number): string[] => {
      const p = new RandomPolicy(seed);
      return Array.from({ length: 300 }, () => p.choose(input(decoders('a', 'b', 'c'), m, new LoadTracker())).worker);
    };
    expect(draw(3)).toEqual(draw(3));
    expect(draw(3)).not.toEqual(draw(4));
    const counts = new Map<string, number>();
    for (const w of draw(3)) counts.set(w, (counts.get(w) ?? 0) + 1);
    for (const w of ['a', 'b', 'c']) expect(counts.get(w)).toBeGreaterThan(70);
  });

  it('least-loaded ignores the cache and picks the lightest worker', () => {
    const cached = matchOf(chainOf(1, 16), { a: [16, 'device'] });
    const loads = new LoadTracker();
    loads.report(loadReport('a', { running: 2 }));
    loads.report(loadReport('b', { running: 1, queuedPrefillTokens: 8 }));
    const d = new LeastLoadedPolicy().choose(input(decoders('a', 'b'), cached, loads));
    expect(d.worker).toBe('b');
    expect(d.scores[0]!.terms).toMatchObject({ cost: 1.5, running: 1 });
  });
});

describe('session-affinity', () => {
  const m = matchOf(chainOf(1, 2), {});
  const workers = decoders('w0', 'w1', 'w2', 'w3', 'w4');

  it('sticks a session to one worker and spreads sessions over all of them', () => {
    const p = new SessionAffinityPolicy();
    const loads = new LoadTracker();
    const seen = new Set<string>();
    for (let s = 0; s < 200; s++) {
      const first = p.choose(input(workers, m, loads, { sessionKey: `user-${s}` })).worker;
      expect(p.choose(input(workers, m, loads, { sessionKey: `user-${s}` })).worker).toBe(first);
      seen.add(first);
    }
    expect(seen.size).toBe(5);
  });

  it('moves only the sessions of a worker that leaves (rendezvous hashing)', () => {
    const p = new SessionAffinityPolicy();
    const keys = Array.from({ length: 300 }, (_, s) => `session-${s}`);
    const before = keys.map((k) => p.preferred(k, workers));
    const after = keys.map((k) =>
      p.preferred(
        k,
        workers.filter((w) => w.id !== 'w2'),
      ),
    );
    keys.forEach((_, i) => {
      if (before[i] !== 'w2') expect(after[i]).toBe(before[i]);
    });
  });

  it('yields to the least-loaded worker when the preferred one is overloaded', () => {
    const p = new SessionAffinityPolicy({ yieldWhen: { maxWaiting: 4 } });
    const loads = new LoadTracker();
    const preferred = p.preferred('alice', workers);
    for (const w of workers) loads.report(loadReport(w.id, { running: w.id === 'w3' ? 0 : 2 }));
    loads.report(loadReport(preferred, { waiting: 4 }));
    expect(p.choose(input(workers, m, loads, { sessionKey: 'alice' })).worker).toBe(preferred);
    loads.report(loadReport(preferred, { waiting: 5 }));
    const d = p.choose(input(workers, m, loads, { sessionKey: 'alice' }));
    expect(d.worker).toBe(preferred === 'w3' ? 'w0' : 'w3');
    expect(d.reason).toMatch(/affinity yielded/);
  });

  it('falls back to least-loaded without a session key', () => {
    const loads = new LoadTracker();
    for (const w of workers) loads.report(loadReport(w.id, { running: w.id === 'w4' ? 0 : 1 }));
    const d = new SessionAffinityPolicy().choose(input(workers, m, loads));
    expect(d.worker).toBe('w4');
    expect(d.reason).toMatch(/no session key/);
  });
});
