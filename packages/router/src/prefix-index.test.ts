import { describe, expect, it } from 'vitest';
import { PrefixIndex } from './prefix-index';
import { chainOf, fakeClock, hx, removed, stored } from './test-support';
import { createRng } from './rng';
import { STORE_HOLDER, type Tier } from './types';

const RESYNC = 10_000;

function live(workers: readonly string[]): { index: PrefixIndex; clock: ReturnType<typeof fakeClock> } {
  const clock = fakeClock();
  const index = new PrefixIndex({ resyncPeriodMs: RESYNC, clock: clock.now });
  for (const w of workers) expect(index.applySnapshot(w, 'i1', 0, [])).toBe('ok');
  return { index, clock };
}

describe('PrefixIndex.matchPrefix', () => {
  it('counts leading blocks per worker and stops at each worker’s first miss', () => {
    const { index } = live(['a', 'b', 'c']);
    const chain = chainOf(100, 6);
    index.applyBatch(stored('a', 1, chain.slice(0, 4)));
    index.applyBatch(stored('b', 1, [chain[0]!, chain[1]!, chain[3]!, chain[4]!])); // hole at block 2
    index.applyBatch(stored('c', 1, chain.slice(1))); // misses block 0: no prefix at all
    const m = index.matchPrefix(chain);
    expect(m.requestedBlocks).toBe(6);
    expect(m.get('a')).toEqual({ blocks: 4, device: 4, host: 0, disk: 0 });
    expect(m.get('b')?.blocks).toBe(2);
    expect(m.has('c')).toBe(false);
    expect(m.storeBlocks).toBe(0);
  });

  it('reports each block in the fastest tier the worker holds it in', () => {
    const { index } = live(['a']);
    const chain = chainOf(1, 5);
    index.applyBatch({
      worker: 'a',
      incarnation: 'i1',
      seq: 1,
      events: [
        { kind: 'stored', hashes: chain.slice(0, 2), tier: 'device' },
        { kind: 'stored', hashes: chain.slice(1, 4), tier: 'host' },
        { kind: 'stored', hashes: chain.slice(3, 5), tier: 'disk' },
      ],
    });
    expect(index.matchPrefix(chain).get('a')).toEqual({ blocks: 5, device: 2, host: 2, disk: 1 });
    // Block 1 offloaded: gone from device, still in host.
    index.applyBatch(removed('a', 2, [chain[1]!], 'device'));
    expect(index.matchPrefix(chain).get('a')).toEqual({ blocks: 5, device: 1, host: 3, disk: 1 });
    index.applyBatch(removed('a', 3, [chain[2]!], 'host'));
    expect(index.matchPrefix(chain).get('a')).toEqual({ blocks: 2, device: 1, host: 1, disk: 0 });
    index.applyBatch(removed('a', 4, [chain[0]!], 'device'));
    expect(index.matchPrefix(chain).has('a')).toBe(false);
  });

  it('credits the store as a separate run that can outlast every worker', () => {
    const { index } = live(['a', STORE_HOLDER]);
    const chain = chainOf(1, 6);
    index.applyBatch(stored('a', 1, chain.slice(0, 2)));
    // The store's own stream counts as store-held whatever tier it names.
    index.applyBatch(stored(STORE_HOLDER, 1, chain.slice(0, 3), 'host'));
    index.applyBatch(stored(STORE_HOLDER, 2, chain.slice(3, 5), 'disk'));
    const m = index.matchPrefix(chain);
    expect(m.storeBlocks).toBe(5);
    expect(m.get('a')?.blocks).toBe(2);
    expect(m.has(STORE_HOLDER)).toBe(false);
  });

  it('counts a worker-reported store-tier block as store-held, not as the worker’s', () => {
    const { index } = live(['a']);
    const chain = chainOf(1, 3);
    index.applyBatch(stored('a', 1, chain, 'store'));
    const m = index.matchPrefix(chain);
    expect(m.storeBlocks).toBe(3);
    expect(m.size).toBe(0);
  });

  it('refuses to answer from a match made before a worker was forgotten', () => {
    const { index } = live(['a', 'b']);
    index.applyBatch(stored('a', 1, chainOf(1, 2)));
    const m = index.matchPrefix(chainOf(1, 2));
    expect(m.get('a')?.blocks).toBe(2);
    index.removeWorker('b');
    expect(() => m.get('a')).toThrow(/stale/);
  });

  it('gives match keys by worker list, matching keyOf', () => {
    const { index } = live(['a', 'b']);
    index.applyBatch(stored('b', 1, chainOf(1, 3)));
    const workers = [{ id: 'b' }, { id: 'zz' }, { id: 'a' }];
    const keys = index.slotsFor(workers);
    expect(index.slotsFor(workers)).toBe(keys);
    const m = index.matchPrefix(chainOf(1, 3));
    expect([m.blocksAt(keys[0]!), m.blocksAt(keys[1]!), m.blocksAt(keys[2]!)]).toEqual([3, 0, 0]);
    expect(keys[0]).toBe(m.keyOf('b'));
    expect(keys[1]).toBe(-1);
  });

  it('handles an empty chain and unknown hashes', () => {
    const { index } = live(['a']);
    index.applyBatch(stored('a', 1, chainOf(1, 3)));
    expect(index.matchPrefix([]).size).toBe(0);
    expect(index.matchPrefix([hx(999)]).size).toBe(0);
  });
});

describe('PrefixIndex events and snapshots', () => {
  it('needs a snapshot before trusting a worker it has never seen', () => {
    const clock = fakeClock();
    const index = new PrefixIndex({ resyncPeriodMs: RESYNC, clock: clock.now });
    const chain = chainOf(1, 2);
    expect(index.applyBatch(stored('a', 5, chain))).toBe('gap');
    expect(index.needsSnapshot('a')).toBe(true);
    expect(index.matchPrefix(chain).size).toBe(0);
    expect(
      index.applySnapshot(
        'a',
        'i1',
        5,
        chain.map((hash) => ({ hash, tier: 'device' as const })),
      ),
    ).toBe('ok');
    expect(index.matchPrefix(chain).get('a')?.blocks).toBe(2);
    expect(index.applyBatch(stored('a', 6, [hx(3)]))).toBe('ok');
  });

  it('reports a gap on a skipped seq, ignores the worker until a snapshot, then replays buffered batches', () => {
    const { index } = live(['a']);
    const chain = chainOf(1, 4);
    expect(index.applyBatch(stored('a', 1, chain.slice(0, 1)))).toBe('ok');
    expect(index.applyBatch(stored('a', 3, chain.slice(2, 3)))).toBe('gap'); // 2 went missing
    expect(index.matchPrefix(chain).size).toBe(0);
    expect(index.status('a')?.phase).toBe('awaiting-snapshot');
    expect(index.applyBatch(stored('a', 4, chain.slice(3, 4)))).toBe('gap'); // still waiting: buffered
    // Snapshot as of seq 2 (blocks 0 and 1); buffered 3 and 4 follow it contiguously.
    const snap = chain.slice(0, 2).map((hash) => ({ hash, tier: 'device' as const }));
    expect(index.applySnapshot('a', 'i1', 2, snap)).toBe('ok');
    expect(index.matchPrefix(chain).get('a')?.blocks).toBe(4);
    expect(index.status('a')).toMatchObject({ phase: 'live', seq: 4, blocks: 4 });
  });

  it('treats a reordered batch as a gap, and the late one is replayed after the snapshot', () => {
    const { index } = live(['a']);
    const chain = chainOf(1, 3);
    expect(index.applyBatch(stored('a', 2, chain.slice(1, 2)))).toBe('gap');
    expect(index.applyBatch(stored('a', 1, chain.slice(0, 1)))).toBe('gap');
    expect(index.applySnapshot('a', 'i1', 0, [])).toBe('ok');
    expect(index.matchPrefix(chain).get('a')?.blocks).toBe(2);
  });

  it('returns to awaiting a snapshot when the buffered batches do not follow it', () => {
    const { index } = live(['a']);
    index.applyBatch(stored('a', 3, [hx(1)]));
    expect(index.applySnapshot('a', 'i1', 1, [])).toBe('gap');
    expect(index.needsSnapshot('a')).toBe(true);
    expect(index.applySnapshot('a', 'i1', 2, [])).toBe('ok'); // buffered 3 now follows
    expect(index.matchPrefix([hx(1)]).get('a')?.blocks).toBe(1);
  });

  it('drops redelivered batches silently', () => {
    const { index } = live(['a']);
    const chain = chainOf(1, 2);
    index.applyBatch(stored('a', 1, chain));
    index.applyBatch(removed('a', 2, chain.slice(1)));
    expect(index.applyBatch(stored('a', 1, chain))).toBe('ok');
    expect(index.matchPrefix(chain).get('a')?.blocks).toBe(1);
  });

  it('drops everything on a new incarnation and waits for its snapshot', () => {
    const { index } = live(['a']);
    const chain = chainOf(1, 2);
    index.applyBatch(stored('a', 1, chain));
    expect(index.applyBatch(stored('a', 1, [hx(9)], 'device', 'i2'))).toBe('gap');
    expect(index.status('a')?.blocks).toBe(0);
    expect(index.size().blocks).toBe(0);
    expect(index.applySnapshot('a', 'i2', 0, [])).toBe('ok');
    expect(index.matchPrefix([hx(9)]).get('a')?.blocks).toBe(1);
  });

  it('applies cleared, and a snapshot replaces all previous entries', () => {
    const { index } = live(['a']);
    index.applyBatch(stored('a', 1, chainOf(1, 3)));
    index.applyBatch({ worker: 'a', incarnation: 'i1', seq: 2, events: [{ kind: 'cleared' }] });
    expect(index.size().blocks).toBe(0);
    index.applyBatch(stored('a', 3, chainOf(1, 3)));
    index.applySnapshot('a', 'i1', 10, [{ hash: hx(50), tier: 'host' }]);
    expect(index.matchPrefix(chainOf(1, 3)).size).toBe(0);
    expect(index.matchPrefix([hx(50)]).get('a')).toEqual({ blocks: 1, device: 0, host: 1, disk: 0 });
  });

  it('removeWorker forgets a worker and leaves others intact', () => {
    const { index } = live(['a', 'b']);
    const chain = chainOf(1, 3);
    index.applyBatch(stored('a', 1, chain));
    index.applyBatch(stored('b', 1, chain.slice(0, 2)));
    index.removeWorker('a');
    const m = index.matchPrefix(chain);
    expect([...m.toMap().keys()]).toEqual(['b']);
    expect(index.status('a')).toBeUndefined();
    // The freed slot is reused cleanly by a newcomer.
    index.applySnapshot('c', 'i1', 0, [{ hash: chain[0]!, tier: 'device' }]);
    expect(index.matchPrefix(chain).get('c')?.blocks).toBe(1);
    index.removeWorker('b');
    index.removeWorker('c');
    expect(index.size()).toEqual({ blocks: 0, holders: 0 });
  });
});

describe('PrefixIndex staleness', () => {
  it('stops trusting a worker not confirmed within the resync period', () => {
    const { index, clock } = live(['a']);
    const chain = chainOf(1, 2);
    index.applyBatch(stored('a', 1, chain));
    clock.advance(RESYNC - 1);
    expect(index.matchPrefix(chain).get('a')?.blocks).toBe(2);
    clock.advance(1);
    expect(index.matchPrefix(chain).size).toBe(0);
    expect(index.needsSnapshot('a')).toBe(true);
    expect(index.holdersNeedingSnapshot()).toEqual(['a']);
    expect(index.status('a')?.phase).toBe('expired');
    // A contiguous batch proves nothing was missed, so it vouches again.
    expect(index.applyBatch({ worker: 'a', incarnation: 'i1', seq: 2, events: [] })).toBe('ok');
    expect(index.matchPrefix(chain).get('a')?.blocks).toBe(2);
  });

  it('a lost removal makes the index claim a block for at most one resync period', () => {
    const { index, clock } = live(['a']);
    const chain = chainOf(1, 1);
    index.applyBatch(stored('a', 1, chain));
    clock.advance(3_000);
    // Batch 2 ("removed") is lost and the worker goes quiet: the claim survives only until expiry.
    expect(index.matchPrefix(chain).size).toBe(1);
    clock.advance(RESYNC - 3_000);
    expect(index.matchPrefix(chain).size).toBe(0);
    // If the worker speaks again, its seq reveals the loss at once.
    expect(index.applyBatch(stored('a', 3, [hx(7)]))).toBe('gap');
    expect(index.matchPrefix(chain).size).toBe(0);
    // The periodic resync restores the truth.
    expect(index.applySnapshot('a', 'i1', 3, [{ hash: hx(7), tier: 'device' }])).toBe('ok');
    expect(index.matchPrefix(chain).size).toBe(0);
    expect(index.matchPrefix([hx(7)]).size).toBe(1);
  });

  it('expires store-held blocks too', () => {
    const { index, clock } = live([STORE_HOLDER]);
    index.applyBatch(stored(STORE_HOLDER, 1, chainOf(1, 2), 'store'));
    expect(index.matchPrefix(chainOf(1, 2)).storeBlocks).toBe(2);
    clock.advance(RESYNC);
    expect(index.matchPrefix(chainOf(1, 2)).storeBlocks).toBe(0);
  });
});

describe('PrefixIndex.matchPrefix against a naive model', () => {
  const SEED = 99;
  it('agrees on random stores, removals, tiers, store holdings and gaps', () => {
    const random = createRng(SEED);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
    const tiers: readonly Tier[] = ['device', 'host', 'disk', 'store'];
    // Three sequences sharing a 6-block root, so holder sets overlap and repeat along chains.
    const root = chainOf(1, 6);
    const sequences = [0, 1, 2].map((k) => [...root, ...chainOf(100 * (k + 1), 14)]);
    const holders = ['a', 'b', 'c', 'd', 'e', STORE_HOLDER];
    const { index } = live(holders);
    const model = new Map(holders.map((w) => [w, new Map<string, Set<Tier>>()]));
    const seq = new Map(holders.map((w) => [w, 0]));
    const broken = new Set<string>();
    let gaps = 0;
    let deepMatches = 0;
    const best = (ts: Set<Tier> | undefined): 'device' | 'host' | 'disk' | undefined =>
      ts?.has('device') ? 'device' : ts?.has('host') ? 'host' : ts?.has('disk') ? 'disk' : undefined;

    for (let op = 0; op < 3000; op++) {
      const w = pick(holders);
      const s = pick(sequences);
      const from = Math.floor(random() * s.length);
      const hashes = random() < 0.7 ? s.slice(from, from + 1 + Math.floor(random() * 10)) : [s[from]!];
      const tier = w === STORE_HOLDER ? 'store' : pick(tiers);
      const kind = random() < 0.65 ? 'stored' : 'removed';
      const next = seq.get(w)! + 1;
      if (broken.has(w)) {
        if (random() < 0.2) {
          const entries = [...model.get(w)!].flatMap(([hash, ts]) => [...ts].map((t) => ({ hash, tier: t })));
          expect(index.applySnapshot(w, 'i1', seq.get(w)!, entries)).toBe('ok');
          broken.delete(w);
        }
        continue;
      }
      const lost = random() < 0.01 && w !== STORE_HOLDER;
      if (!lost) expect(index.applyBatch({ worker: w, incarnation: 'i1', seq: next, events: [{ kind, hashes, tier }] })).toBe('ok');
      seq.set(w, next);
      for (const h of hashes) {
        const held = model.get(w)!.get(h) ?? new Set<Tier>();
        if (kind === 'stored') held.add(tier);
        else held.delete(tier);
        model.get(w)!.set(h, held);
      }
      if (lost) {
        // The worker's next (empty) batch reveals the loss; it is ignored until its snapshot.
        seq.set(w, next + 1);
        expect(index.applyBatch({ worker: w, incarnation: 'i1', seq: next + 1, events: [] })).toBe('gap');
        broken.add(w);
        gaps++;
      }

      if (op % 7 !== 0) continue;
      const chain = pick(sequences).slice(0, 1 + Math.floor(random() * 20));
      const m = index.matchPrefix(chain);
      for (const worker of holders.filter((x) => x !== STORE_HOLDER)) {
        const want = { blocks: 0, device: 0, host: 0, disk: 0 };
        if (!broken.has(worker)) {
          for (const h of chain) {
            const t = best(model.get(worker)!.get(h));
            if (t === undefined) break;
            want.blocks++;
            want[t]++;
          }
        }
        expect(m.get(worker) ?? want).toEqual(want);
        if (want.blocks >= 8) deepMatches++;
      }
      let storeBlocks = 0;
      while (
        storeBlocks < chain.length &&
        holders.some((x) => !broken.has(x) && (model.get(x)!.get(chain[storeBlocks]!)?.has('store') ?? false))
      )
        storeBlocks++;
      expect(m.storeBlocks).toBe(storeBlocks);
    }
    expect(gaps).toBeGreaterThan(3);
    expect(deepMatches).toBeGreaterThan(50);
  });
});
