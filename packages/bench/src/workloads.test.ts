import { describe, expect, it } from 'vitest';
import { resolveOptions } from './options';
import { renderText } from './prompts';
import { WORKLOAD_DEFAULTS, promptLength, syntheticSource, type WorkloadShape } from './workloads';

const shape = (kind: keyof typeof WORKLOAD_DEFAULTS, over: Partial<WorkloadShape> = {}): WorkloadShape => ({
  ...WORKLOAD_DEFAULTS[kind],
  tokenRange: { min: 100, max: 30_000 },
  ...over,
});

describe('synthetic workloads', () => {
  it('shared-prefix: N system prompts shared verbatim, unique suffixes', () => {
    const src = syntheticSource('shared-prefix', shape('shared-prefix', { numPrefixes: 3, prefixLen: 50, inputLen: 10 }), 9);
    const reqs = Array.from({ length: 30 }, (_, i) => src.get(i)!);
    const prefixes = new Set(reqs.map((r) => r.parts[0]!.tokenIds.join(',')));
    expect(prefixes.size).toBe(3);
    expect(new Set(reqs.map((r) => r.parts[1]!.tokenIds.join(','))).size).toBe(30);
    expect(reqs.every((r) => promptLength(r) === 60)).toBe(true);
    expect(syntheticSource('shared-prefix', shape('shared-prefix', { numPrefixes: 3, prefixLen: 50, inputLen: 10 }), 9).get(7)).toEqual(
      reqs[7],
    );
  });

  it('multi-turn: each turn extends the previous prompt and waits for it', () => {
    const s = shape('multi-turn', { sessions: 2, turns: 3, prefixLen: 8, inputLen: 4, maxTokens: 5 });
    const src = syntheticSource('multi-turn', s, 1);
    const ids = (i: number): string =>
      src
        .get(i)!
        .parts.flatMap((p) => p.tokenIds)
        .join(',');
    for (const i of [2, 3, 4, 5]) {
      expect(ids(i).startsWith(ids(i - 2))).toBe(true);
      expect(src.get(i)!.after).toBe(i - 2);
      expect(src.get(i)!.session).toBe(i % 2);
    }
    expect(src.get(0)!.after).toBeUndefined();
    expect(promptLength(src.get(4)!)).toBe(8 + 3 * 4 + 2 * 5);
    // Request 6 starts the next wave: new sessions.
    expect(src.get(6)!.session).toBe(2);
    expect(src.get(6)!.after).toBeUndefined();
  });

  it('random: lengths within the range ratio', () => {
    const src = syntheticSource('random', shape('random', { inputLen: 100, maxTokens: 20, rangeRatio: 0.5 }), 4);
    const lens = Array.from({ length: 200 }, (_, i) => src.get(i)!);
    for (const r of lens) {
      expect(promptLength(r)).toBeGreaterThanOrEqual(50);
      expect(promptLength(r)).toBeLessThanOrEqual(150);
      expect(r.maxTokens).toBeGreaterThanOrEqual(10);
      expect(r.maxTokens).toBeLessThanOrEqual(30);
    }
    expect(new Set(lens.map(promptLength)).size).toBeGreaterThan(30);
  });

  it('renders token ids as text with equal prefixes for equal ids', () => {
    expect(renderText([100, 101, 102]).startsWith(renderText([100, 101]))).toBe(true);
    expect(renderText([100, 101]).split(' ').length).toBe(2);
  });

  it('resolves options with per-workload defaults', () => {
    const o = resolveOptions({ url: 'http://127.0.0.1:8000', model: 'm', workload: 'multi-turn', turns: 2 });
    expect(o).toMatchObject({ endpoint: 'completions', tokenIds: true, requests: 100, rate: null, seed: 0 });
    expect(o.shape).toMatchObject({ sessions: 4, turns: 2, prefixLen: 64 });
    expect(resolveOptions({ url: 'http://h:1', model: 'm', workload: 'random', rate: Infinity }).rate).toBe('inf');
    expect(resolveOptions({ url: 'http://h:1', model: 'm', workload: 'random', endpoint: 'chat' }).tokenIds).toBe(false);
    expect(() => resolveOptions({ url: 'http://h:1', model: 'm', workload: 'random', endpoint: 'chat', tokenIds: true })).toThrow(
      'tokenIds',
    );
    expect(() => resolveOptions({ url: 'http://h:1', model: 'm', workload: 'random', rangeRatio: 1 })).toThrow('rangeRatio');
  });
});
