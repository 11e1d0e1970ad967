import { describe, expect, it } from 'vitest';
import { poissonArrivals } from './arrivals';

const take = (next: () => number, n: number): number[] => Array.from({ length: n }, () => next());

describe('poissonArrivals', () => {
  it('is reproducible for a seed and differs across seeds', () => {
    const a = take(poissonArrivals(5, 42), 200);
    expect(take(poissonArrivals(5, 42), 200)).toEqual(a);
    expect(take(poissonArrivals(5, 43), 200)).not.toEqual(a);
    expect(a[0]).toBe(0);
    for (let i = 1; i < a.length; i++) expect(a[i]!).toBeGreaterThan(a[i - 1]!);
  });

  it('has mean gap 1/rate and exponential spread', () => {
    const n = 20_000;
    const a = take(poissonArrivals(10, 7), n + 1);
    const gaps = a.slice(1).map((t, i) => t - a[i]!);
    const mean = gaps.reduce((s, g) => s + g, 0) / n;
    expect(mean).toBeGreaterThan(95);
    expect(mean).toBeLessThan(105);
    // For an exponential distribution, P(gap > mean) = e^-1 ≈ 0.368.
    const above = gaps.filter((g) => g > 100).length / n;
    expect(above).toBeGreaterThan(0.35);
    expect(above).toBeLessThan(0.39);
  });

  it('sends everything at once at infinite rate and rejects nonsense', () => {
    expect(take(poissonArrivals(Number.POSITIVE_INFINITY, 1), 3)).toEqual([0, 0, 0]);
    expect(() => poissonArrivals(0, 1)).toThrow(RangeError);
  });
});
