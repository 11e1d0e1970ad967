import { describe, expect, it } from 'vitest';
import { placeReplicas } from './placement';
import { hashOf } from './test-helpers';

const NODES = ['store-0', 'store-1', 'store-2', 'store-3', 'store-4'];

describe('placeReplicas', () => {
  it('is deterministic and independent of node order and duplicates', () => {
    for (let i = 0; i < 50; i++) {
      const h = hashOf(i * 7919);
      const a = placeReplicas(h, NODES, 3);
      expect(placeReplicas(h, [...NODES].reverse(), 3)).toEqual(a);
      expect(placeReplicas(h, [...NODES, ...NODES], 3)).toEqual(a);
      expect(new Set(a).size).toBe(3);
      expect(a.every((n) => NODES.includes(n))).toBe(true);
    }
  });

  it('handles n of 0, n above the node count, and no nodes', () => {
    expect(placeReplicas(hashOf(1), NODES, 0)).toEqual([]);
    expect(placeReplicas(hashOf(1), NODES, 9).sort()).toEqual([...NODES].sort());
    expect(placeReplicas(hashOf(1), [], 2)).toEqual([]);
    expect(() => placeReplicas(hashOf(1), NODES, -1)).toThrow(/whole number/);
    expect(() => placeReplicas(hashOf(1), NODES, 1.5)).toThrow(/whole number/);
  });

  it('prefixes agree: the top 2 are the first 2 of the top 3', () => {
    for (let i = 0; i < 50; i++) expect(placeReplicas(hashOf(i), NODES, 3).slice(0, 2)).toEqual(placeReplicas(hashOf(i), NODES, 2));
  });

  it("moves only the departed node's share when a node leaves", () => {
    let moved = 0;
    for (let i = 0; i < 500; i++) {
      const h = hashOf(i);
      const before = placeReplicas(h, NODES, 2);
      const after = placeReplicas(
        h,
        NODES.filter((n) => n !== 'store-2'),
        2,
      );
      if (!before.includes('store-2')) expect(after).toEqual(before);
      else moved += 1;
    }
    expect(moved).toBeGreaterThan(100); // about 2/5 of 500
    expect(moved).toBeLessThan(300);
  });

  it('spreads blocks about evenly', () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 2000; i++) {
      const [first] = placeReplicas(hashOf(i), NODES, 1);
      counts.set(first!, (counts.get(first!) ?? 0) + 1);
    }
    for (const n of NODES) expect(counts.get(n)).toBeGreaterThan(300); // 400 expected each
  });
});
