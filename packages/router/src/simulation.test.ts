import { describe, expect, it } from 'vitest';
import type { PolicyName } from './policy';
import { createRng } from './rng';
import { Router } from './router';
import { chainOf, loadReport } from './test-support';
import type { KvEventBatch } from './types';

// Workload: 8 system prompts shared by many users; each request is one system prompt + a user's own turn.
const BS = 16;
const PROMPTS = 8;
const SYSTEM_BLOCKS = 32;
const USER_BLOCKS = 2;
const REQUESTS = 2000;
/** Device KV pool per worker, blocks: half the system prompts (4 × 32) plus user turns fit, all 8 do not. */
const CAPACITY = 170;
/** How long a request keeps decoding, in arrivals. */
const DURATION = 24;
const WORKERS = ['d0', 'd1'];

/** A decode worker's prefix cache: LRU over block hashes, publishing what it stores and evicts. */
class SimWorker {
  private readonly lru = new Map<string, true>();
  private seq = 0;
  readonly ends: number[] = [];

  constructor(
    readonly id: string,
    private readonly capacity: number,
  ) {}

  /** Serves a prompt: returns its leading cached blocks and the event batch the worker would publish. */
  serve(chain: readonly string[]): { hit: number; batch: KvEventBatch } {
    let hit = 0;
    while (hit < chain.length && this.lru.has(chain[hit]!)) hit++;
    const added: string[] = [];
    for (const h of chain) {
      if (this.lru.delete(h)) this.lru.set(h, true);
      else {
        this.lru.set(h, true);
        added.push(h);
      }
    }
    const evicted: string[] = [];
    for (const h of this.lru.keys()) {
      if (this.lru.size <= this.capacity) break;
      this.lru.delete(h);
      evicted.push(h);
    }
    this.seq++;
    const batch: KvEventBatch = {
      worker: this.id,
      incarnation: 'i1',
      seq: this.seq,
      events: [
        { kind: 'stored', hashes: added, tier: 'device' },
        { kind: 'removed', hashes: evicted, tier: 'device' },
      ],
    };
    return { hit, batch };
  }
}

function simulate(policy: PolicyName): { hitRate: number; bestRate: number; split: number[] } {
  const router = new Router({ blockSize: BS, policy, seed: 12_345 }); // seed unrelated to the workload's
  router.setWorkers(WORKERS.map((id) => ({ id, role: 'decode' })));
  const sims = new Map(WORKERS.map((id) => [id, new SimWorker(id, CAPACITY)]));
  for (const id of WORKERS) router.applySnapshot(id, 'i1', 0, []);
  const random = createRng(42);
  const seenPrompt = new Set<number>();
  let requested = 0;
  let hits = 0;
  let best = 0;
  for (let t = 0; t < REQUESTS; t++) {
    const p = Math.floor(random() * PROMPTS);
    const chain = [...chainOf(p * 1000, SYSTEM_BLOCKS), ...chainOf(1_000_000 + t * USER_BLOCKS, USER_BLOCKS)];
    const d = router.route({ requestId: `r${t}`, chain, promptTokens: chain.length * BS + 7, sessionKey: `user-${t % 97}` });
    const sim = sims.get(d.decodeWorker)!;
    const { hit, batch } = sim.serve(chain);
    // The index must agree with the worker's real cache.
    expect(d.prefillPrefix.blocks).toBe(hit);
    expect(router.applyKvBatch(batch)).toBe('ok');
    sim.ends.push(t + DURATION);
    requested += chain.length;
    hits += hit;
    best += seenPrompt.has(p) ? SYSTEM_BLOCKS : 0;
    seenPrompt.add(p);
    for (const s of sims.values()) {
      while (s.ends.length > 0 && s.ends[0]! <= t) s.ends.shift();
      router.reportLoad(loadReport(s.id, { running: s.ends.length, totalBlocks: CAPACITY, freeBlocks: CAPACITY / 2 }));
    }
  }
  const byWorker = router.stats().byWorker;
  return { hitRate: hits / requested, bestRate: best / requested, split: WORKERS.map((w) => byWorker[w]?.decode ?? 0) };
}

describe('kv-aware on shared system prompts', () => {
  it('reaches near the best possible prefix-hit rate and beats round-robin by ≥ 1.5×', () => {
    const kv = simulate('kv-aware');
    const rr = simulate('round-robin');
    const rnd = simulate('random');
    console.info(
      `hit rate: kv-aware ${kv.hitRate.toFixed(3)} (split ${kv.split}), round-robin ${rr.hitRate.toFixed(3)}, ` +
        `random ${rnd.hitRate.toFixed(3)}, best possible ${kv.bestRate.toFixed(3)}`,
    );
    expect(kv.hitRate).toBeGreaterThanOrEqual(0.95 * kv.bestRate);
    expect(kv.hitRate).toBeGreaterThanOrEqual(1.5 * rr.hitRate);
    expect(kv.hitRate).toBeGreaterThanOrEqual(1.5 * rnd.hitRate);
    // Both workers carry a fair share.
    expect(Math.min(...kv.split)).toBeGreaterThan(REQUESTS * 0.3);
  });
});
