import { describe, expect, it } from 'vitest';
import { SampleBuffer, percentile, summarize } from './stats';

describe('percentile (linear between closest ranks, as numpy)', () => {
  it('matches hand-computed values', () => {
    const xs = [1, 2, 3, 4, 10];
    // rank = q/100 × 4: p50 → 2 → 3; p90 → 3.6 → 4 + 0.6 × 6 = 7.6; p99 → 3.96 → 4 + 0.96 × 6 = 9.76.
    expect(percentile(xs, 50)).toBe(3);
    expect(percentile(xs, 90)).toBeCloseTo(7.6, 12);
    expect(percentile(xs, 99)).toBeCloseTo(9.76, 12);
    expect(percentile(xs, 0)).toBe(1);
    expect(percentile(xs, 100)).toBe(10);
    // Even count: p50 of [1, 2, 3, 4] is 2.5; p25 → rank 0.75 → 1.75.
    expect(percentile([1, 2, 3, 4], 50)).toBe(2.5);
    expect(percentile([1, 2, 3, 4], 25)).toBe(1.75);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
  });

  it('summarize sorts, averages and reports null when empty', () => {
    const s = summarize([10, 4, 1, 3, 2]);
    expect(s).toMatchObject({ count: 5, mean: 4, min: 1, p50: 3, max: 10 });
    expect(s.p90).toBeCloseTo(7.6, 12);
    expect(summarize([])).toEqual({ count: 0, mean: null, min: null, p50: null, p90: null, p99: null, max: null });
  });

  it('SampleBuffer grows', () => {
    const b = new SampleBuffer();
    for (let i = 0; i < 5000; i++) b.push(i);
    expect(b.length).toBe(5000);
    expect(b.values()[4999]).toBe(4999);
  });
});
