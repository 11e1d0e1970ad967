import { describe, expect, it } from 'vitest';
import { Rng } from './rng';
import { Sampler, isStopToken } from './sampler';
import { samplingParams, type SamplingParams } from './sampling';

const row = (values: readonly number[]): Float32Array => Float32Array.from(values);
/** Logits whose softmax is exactly `probs`. */
const logitsOf = (probs: readonly number[]): Float32Array => row(probs.map(Math.log));

function draws(params: Partial<SamplingParams>, logits: Float32Array, n: number, output: number[] = []): number[] {
  const sampler = new Sampler(samplingParams({ seed: 1234, ...params }), logits.length);
  return Array.from({ length: n }, () => sampler.sample(logits, [], output).tokenId);
}

function histogram(tokens: readonly number[], vocab: number): number[] {
  const h = new Array<number>(vocab).fill(0);
  for (const t of tokens) h[t]++;
  return h;
}

function greedy(params: Partial<SamplingParams>, logits: number[], prompt: number[], output: number[]): number {
  return new Sampler(samplingParams({ temperature: 0, ...params }), logits.length).sample(row(logits), prompt, output).tokenId;
}

describe('temperature', () => {
  const logits = row([2, 1, 0, 1.5]);

  it('0 is greedy: argmax every time, ties to the lowest id, top-k/p and seed ignored', () => {
    expect(new Set(draws({ temperature: 0, topK: 3, topP: 0.5, seed: 7 }, logits, 50))).toEqual(new Set([0]));
    expect(greedy({}, [1, 3, 3, 2], [], [])).toBe(1);
  });

  it('high temperature flattens the distribution', () => {
    const h = histogram(draws({ temperature: 100 }, logits, 400), 4);
    // Nearly uniform: every token is drawn often, even the lowest.
    for (const c of h) expect(c).toBeGreaterThan(60);
  });

  it('low temperature sharpens it', () => {
    const h = histogram(draws({ temperature: 0.05 }, logits, 400), 4);
    expect(h[0]).toBe(400);
  });
});

describe('top-k', () => {
  it('k = 1 always picks the argmax, even at high temperature', () => {
    expect(new Set(draws({ temperature: 50, topK: 1 }, row([0.1, 0.3, 0.2, 0.25]), 200))).toEqual(new Set([1]));
  });

  it('k = 2 draws only from the two best', () => {
    const h = histogram(draws({ temperature: 10, topK: 2 }, row([0.1, 0.3, 0.2, 0.25, 0.0]), 500), 5);
    expect(h[1]).toBeGreaterThan(150);
    expect(h[3]).toBeGreaterThan(150);
    expect(h[0] + h[2] + h[4]).toBe(0);
  });

  it('keeps the lower id when scores tie at the k-th place', () => {
    expect(new Set(draws({ topK: 2 }, row([0, 5, 3, 5, 3]), 100))).toEqual(new Set([1, 3]));
    expect(new Set(draws({ topK: 1 }, row([0, 5, 3, 5, 3]), 20))).toEqual(new Set([1]));
  });
});

describe('top-p', () => {
  const logits = logitsOf([0.1, 0.4, 0.2, 0.3]);

  it('keeps the smallest head whose mass reaches p', () => {
    // 0.4 < 0.5 ≤ 0.4 + 0.3: the nucleus is tokens 1 and 3.
    const h = histogram(draws({ topP: 0.5 }, logits, 500), 4);
    expect(h[1]).toBeGreaterThan(200);
    expect(h[3]).toBeGreaterThan(150);
    expect(h[0] + h[2]).toBe(0);
  });

  it('a tiny p keeps only the top token', () => {
    expect(new Set(draws({ topP: 0.01, temperature: 5 }, logits, 200))).toEqual(new Set([1]));
  });

  it('reaches deep into a long tail when p asks for it', () => {
    // One head token and 999 tail tokens each far below the first gathering threshold.
    const probs = [1, ...new Array<number>(999).fill(Math.exp(-10))];
    const total = probs.reduce((a, b) => a + b, 0);
    const logits = row(probs.map(Math.log));
    // Brute force: ties go to lower ids, so the nucleus is ids 0..last.
    let cumulative = 0;
    let last = 0;
    while (cumulative + probs[last] < 0.99 * total) cumulative += probs[last++];
    const sampled = draws({ topP: 0.99 }, logits, 3000);
    expect(Math.max(...sampled)).toBeLessThanOrEqual(last);
    expect(sampled.filter((t) => t > last / 2).length).toBeGreaterThan(10);
  });

  it('never leaves the brute-force nucleus on random rows with ties', () => {
    const rng = new Rng(11);
    for (let trial = 0; trial < 20; trial++) {
      // Few distinct levels, so many ties sit at the boundary.
      const logits = row(Array.from({ length: 300 }, () => rng.nextUint32() % 8));
      const topP = 0.05 + 0.9 * rng.nextFloat();
      const probs = Array.from(logits, (x) => Math.exp(x));
      const total = probs.reduce((a, b) => a + b, 0);
      const order = [...probs.keys()].sort((a, b) => probs[b]! - probs[a]! || a - b);
      let cumulative = 0;
      let size = 0;
      while (cumulative < topP * total) cumulative += probs[order[size++]!]!;
      const nucleus = new Set(order.slice(0, size));
      const sampled = draws({ topP, seed: trial }, logits, 100);
      expect(sampled.filter((t) => !nucleus.has(t))).toEqual([]);
    }
  });

  it('applies to the top-k survivors, renormalised', () => {
    // Top-2 leaves 0.4 and 0.3 (mass 0.7); p = 0.5 of that (0.35) needs only token 1.
    expect(new Set(draws({ topK: 2, topP: 0.5 }, logits, 200))).toEqual(new Set([1]));
  });
});

describe('min-p', () => {
  const logits = logitsOf([0.5, 0.3, 0.15, 0.05]);

  it('drops tokens below min-p × the top probability', () => {
    // Threshold 0.2 × 0.5 = 0.1: token 3 (0.05) goes, token 2 (0.15) stays.
    const h = histogram(draws({ minP: 0.2 }, logits, 2000), 4);
    expect(h[3]).toBe(0);
    expect(h[2]).toBeGreaterThan(150);
    const unfiltered = histogram(draws({}, logits, 2000), 4);
    expect(unfiltered[3]).toBeGreaterThan(50);
  });

  it('works after top-k and top-p too', () => {
    // min-p 0.5 → threshold 0.25: only tokens 0 and 1 survive whichever path runs.
    for (const extra of [{ topK: 3 }, { topP: 0.95 }]) {
      const h = histogram(draws({ minP: 0.5, ...extra }, logits, 1000), 4);
      expect(h[2] + h[3]).toBe(0);
      expect(h[1]).toBeGreaterThan(200);
    }
  });
});

describe('penalties', () => {
  it('repetition penalty divides a positive logit seen in the prompt', () => {
    expect(greedy({}, [2.0, 1.9], [0], [])).toBe(0);
    expect(greedy({ repetitionPenalty: 1.2 }, [2.0, 1.9], [0], [])).toBe(1);
  });

  it('repetition penalty multiplies a negative logit seen in the output', () => {
    expect(greedy({ repetitionPenalty: 1.2 }, [-1.0, -1.1], [], [])).toBe(0);
    expect(greedy({ repetitionPenalty: 1.2 }, [-1.0, -1.1], [], [0])).toBe(1);
  });

  it('repetition penalty applies once per token, however often it appears', () => {
    // Once: 2 / 1.2 = 1.67 > 1.5; three times would give 1.16.
    expect(greedy({ repetitionPenalty: 1.2 }, [2.0, 1.5], [0, 0], [0])).toBe(0);
  });

  it('presence penalty subtracts once for tokens in the output only', () => {
    expect(greedy({ presencePenalty: 0.3 }, [1.0, 0.8], [], [0])).toBe(1);
    expect(greedy({ presencePenalty: 0.3 }, [1.0, 0.8], [0], [])).toBe(0);
    expect(greedy({ presencePenalty: 0.1 }, [1.0, 0.8], [], [0, 0, 0])).toBe(0);
  });

  it('frequency penalty subtracts per occurrence in the output', () => {
    expect(greedy({ frequencyPenalty: 0.1 }, [1.0, 0.8], [], [0])).toBe(0);
    expect(greedy({ frequencyPenalty: 0.1 }, [1.0, 0.8], [], [0, 0, 0])).toBe(1);
    expect(greedy({ frequencyPenalty: 0.1 }, [1.0, 0.8], [0, 0, 0], [])).toBe(0);
  });

  it('negative penalties encourage repetition', () => {
    expect(greedy({ presencePenalty: -0.5 }, [1.0, 0.8], [], [1])).toBe(1);
  });

  it('also shape sampling, not only greedy', () => {
    const logits = row([5, 0, 0]);
    const sampler = new Sampler(samplingParams({ seed: 3, frequencyPenalty: 10 }), 3);
    const tokens = Array.from({ length: 50 }, () => sampler.sample(logits, [], [0]).tokenId);
    expect(tokens).not.toContain(0);
  });
});

describe('seed', () => {
  const flat = row(new Array<number>(50).fill(0));

  it('the same seed gives the same 100 tokens, different seeds differ', () => {
    const a = draws({ seed: 42 }, flat, 100);
    expect(draws({ seed: 42 }, flat, 100)).toEqual(a);
    expect(draws({ seed: 43 }, flat, 100)).not.toEqual(a);
    expect(new Set(a).size).toBeGreaterThan(30); // really random over the 50 tokens
  });

  it('no seed means a fresh random stream', () => {
    expect(draws({ seed: undefined }, flat, 100)).not.toEqual(draws({ seed: undefined }, flat, 100));
  });

  it('takes exactly one draw per token whatever path ran, and samplers do not share a stream', () => {
    const params = samplingParams({ seed: 9, topP: 0.9 });
    const a = new Sampler(params, 50);
    const b = new Sampler(params, 50);
    const other = new Sampler(samplingParams({ seed: 9 }), 50);
    // First token: different logits (b's are all masked, the degenerate path) — still one draw each.
    a.sample(flat, [], []);
    b.sample(row(new Array<number>(50).fill(-Infinity)), [], []);
    for (let i = 0; i < 20; i++) {
      other.sample(flat, [], []);
      expect(b.sample(flat, [], []).tokenId).toBe(a.sample(flat, [], []).tokenId);
    }
  });

  it('the rng state can be saved and restored to continue a stream elsewhere', () => {
    const a = new Sampler(samplingParams({ seed: 5 }), 50);
    for (let i = 0; i < 7; i++) a.sample(flat, [], []);
    const b = new Sampler(samplingParams({ seed: 999 }), 50);
    b.rngState = a.rngState;
    const next = Array.from({ length: 20 }, () => a.sample(flat, [], []).tokenId);
    expect(Array.from({ length: 20 }, () => b.sample(flat, [], []).tokenId)).toEqual(next);
  });

  it('rng: uniform in [0, 1), seeds beyond 32 bits and negative seeds give distinct streams', () => {
    const streams = [0, 1, 2 ** 32, 2 ** 52 + 1, -1].map((s) => {
      const rng = new Rng(s);
      return Array.from({ length: 4 }, () => rng.nextFloat());
    });
    expect(new Set(streams.map((s) => s.join())).size).toBe(5);
    const rng = new Rng(77);
    let sum = 0;
    let outside = 0;
    for (let i = 0; i < 10_000; i++) {
      const x = rng.nextFloat();
      if (!(x >= 0 && x < 1)) outside++;
      sum += x;
    }
    expect(outside).toBe(0);
    expect(Math.abs(sum / 10_000 - 0.5)).toBeLessThan(0.02);
  });
});

describe('distribution', () => {
  it('empirical frequencies match the softmax probabilities', () => {
    const probs = [0.5, 0.25, 0.125, 0.0625, 0.0625];
    const n = 20_000;
    const h = histogram(draws({ seed: 1 }, logitsOf(probs), n), probs.length);
    probs.forEach((p, i) => expect(Math.abs(h[i] / n - p)).toBeLessThan(0.015));
  });

  it('the same holds through the top-k path (k = vocab - 1)', () => {
    const probs = [0.5, 0.25, 0.125, 0.0625, 0.0625];
    const n = 20_000;
    const h = histogram(draws({ seed: 2, topK: 4 }, logitsOf(probs), n), probs.length);
    // Ties at the 4th place keep the lower id; the kept mass is 0.9375.
    [0.5, 0.25, 0.125, 0.0625, 0].forEach((p, i) => expect(Math.abs(h[i] / n - p / 0.9375)).toBeLessThan(0.015));
  });
});

describe('logprobs', () => {
  const logits = [1, 2, 3, 0.5];
  const logNorm = Math.log(logits.reduce((s, x) => s + Math.exp(x), 0));

  it('are the log-softmax of the raw logits, with the top k sorted', () => {
    const t = new Sampler(samplingParams({ temperature: 0, logprobs: 2 }), 4).sample(row(logits), [], []);
    expect(t.tokenId).toBe(2);
    expect(t.logprob).toBeCloseTo(3 - logNorm, 6);
    expect(t.topLogprobs?.map((x) => x.tokenId)).toEqual([2, 1]);
    expect(t.topLogprobs?.[0]?.logprob).toBeCloseTo(3 - logNorm, 6);
    expect(t.topLogprobs?.[1]?.logprob).toBeCloseTo(2 - logNorm, 6);
  });

  it('ignore penalties and temperature (raw logits, as vLLM by default)', () => {
    const params = samplingParams({ temperature: 0, logprobs: 0, repetitionPenalty: 2 });
    const t = new Sampler(params, 4).sample(row(logits), [2], []);
    expect(t.tokenId).toBe(1); // 3 / 2 = 1.5 < 2
    expect(t.logprob).toBeCloseTo(2 - logNorm, 6);
    expect(t.topLogprobs).toEqual([]);
    const hot = new Sampler(samplingParams({ temperature: 7, seed: 1, logprobs: 1 }), 4).sample(row(logits), [], []);
    expect(hot.logprob).toBeCloseTo(logits[hot.tokenId]! - logNorm, 6);
  });

  it('are not computed unless asked', () => {
    const t = new Sampler(samplingParams({ temperature: 0 }), 4).sample(row(logits), [], []);
    expect(t.logprob).toBeNaN();
    expect(t.topLogprobs).toBeUndefined();
  });
});

describe('rows and parameters', () => {
  it('never picks a padding column past the vocab', () => {
    const padded = row([1, 2, 0, 99, 99]);
    expect(new Sampler(samplingParams({ temperature: 0 }), 3).sample(padded, [], []).tokenId).toBe(1);
    expect(draws({ temperature: 3 }, padded, 100).every((t) => t < 5)).toBe(true);
    const s = new Sampler(samplingParams({ temperature: 3, seed: 1 }), 3);
    for (let i = 0; i < 100; i++) expect(s.sample(padded, [], [3, 4]).tokenId).toBeLessThan(3);
  });

  it('rejects invalid parameters and short rows', () => {
    expect(() => new Sampler(samplingParams({ topP: 0 }), 4)).toThrow(/topP/);
    expect(() => new Sampler(samplingParams({ temperature: -1 }), 4)).toThrow(/temperature/);
    expect(() => new Sampler(samplingParams({ repetitionPenalty: 0 }), 4)).toThrow(/repetitionPenalty/);
    expect(() => new Sampler(samplingParams({}), 4).sample(row([1, 2]), [], [])).toThrow(RangeError);
  });
});

describe('isStopToken', () => {
  const eos = [2, 7];

  it('stops on EOS unless ignoreEos, and always on request stop ids', () => {
    expect(isStopToken(2, samplingParams({}), eos)).toBe(true);
    expect(isStopToken(7, samplingParams({}), eos)).toBe(true);
    expect(isStopToken(3, samplingParams({}), eos)).toBe(false);
    expect(isStopToken(2, samplingParams({ ignoreEos: true }), eos)).toBe(false);
    expect(isStopToken(3, samplingParams({ ignoreEos: true, stopTokenIds: [3] }), eos)).toBe(true);
  });
});

/** A token bitmask allowing exactly `ids`. */
function maskOf(ids: readonly number[], vocab: number): Int32Array {
  const m = new Int32Array(Math.ceil(vocab / 32));
  for (const id of ids) m[id >> 5]! |= 1 << (id & 31);
  return m;
}

describe('logit_bias', () => {
  const logits = [3, 1, 0, 2];

  it('greedy with a large bias forces the token; a negative one bans it', () => {
    expect(greedy({ logitBias: { 2: 100 } }, logits, [], [])).toBe(2);
    expect(greedy({ logitBias: { 0: -100 } }, logits, [], [])).toBe(3);
    expect(greedy({ logitBias: {} }, logits, [], [])).toBe(0);
  });

  it('shifts seeded sampling toward the token, reproducibly', () => {
    const flat = logitsOf([0.25, 0.25, 0.25, 0.25]);
    const biased = draws({ logitBias: { 1: 3 } }, flat, 2000);
    expect(histogram(biased, 4)[1]).toBeGreaterThan(1500); // e^3 / (e^3 + 3) ≈ 0.87
    expect(draws({ logitBias: { 1: 3 } }, flat, 200)).toEqual(biased.slice(0, 200));
  });

  it('leaves logprobs as the model gave them', () => {
    const plain = new Sampler(samplingParams({ temperature: 0, logprobs: 0 }), 4).sample(row(logits), [], []);
    const biased = new Sampler(samplingParams({ temperature: 0, logprobs: 0, logitBias: { 2: 100 } }), 4).sample(row(logits), [], []);
    expect(biased.tokenId).toBe(2);
    expect(biased.logprob).toBeLessThan(plain.logprob);
  });

  it('rejects ids outside the vocab and non-finite values', () => {
    expect(() => new Sampler(samplingParams({ logitBias: { 4: 1 } }), 4)).toThrow(/logitBias token id 4/);
    expect(() => new Sampler(samplingParams({ logitBias: { 1: Number.NaN } }), 4)).toThrow(/logitBias value/);
  });
});

describe('min_tokens', () => {
  const eos = [2];
  const logits = row([0, 1, 5, 4]); // EOS (2) is the argmax

  it('holds back EOS and stop ids until N tokens are out, then lets them through', () => {
    const s = new Sampler(samplingParams({ temperature: 0, minTokens: 2, stopTokenIds: [3] }), 4, eos);
    expect(s.sample(logits, [], []).tokenId).toBe(1);
    expect(s.sample(logits, [], [1]).tokenId).toBe(1);
    expect(s.sample(logits, [], [1, 1]).tokenId).toBe(2);
  });

  it('with ignoreEos, EOS is an ordinary token and is not held back', () => {
    expect(new Sampler(samplingParams({ temperature: 0, minTokens: 5, ignoreEos: true }), 4, eos).sample(logits, [], []).tokenId).toBe(2);
  });

  it('yields to a grammar that allows nothing but EOS', () => {
    const s = new Sampler(samplingParams({ temperature: 0, minTokens: 10 }), 4, eos);
    expect(s.sample(logits, [], [], maskOf([2], 4)).tokenId).toBe(2);
    expect(s.sample(logits, [], [], maskOf([0, 2], 4)).tokenId).toBe(0);
  });

  it('rejects a negative count', () => {
    expect(() => new Sampler(samplingParams({ minTokens: -1 }), 4)).toThrow(/minTokens/);
  });
});

describe('token mask', () => {
  it('greedy picks the best allowed token; seeded draws only allowed ones', () => {
    const logits = row(Array.from({ length: 70 }, (_, i) => i)); // 69 is the argmax
    const mask = maskOf([3, 40, 64], 70);
    expect(new Sampler(samplingParams({ temperature: 0 }), 70).sample(logits, [], [], mask).tokenId).toBe(64);
    const s = new Sampler(samplingParams({ temperature: 50, seed: 3, topP: 0.9, topK: 10 }), 70);
    const seen = new Set(Array.from({ length: 300 }, () => s.sample(logits, [], [], mask).tokenId));
    expect([...seen].every((t) => [3, 40, 64].includes(t))).toBe(true);
    expect(seen.size).toBeGreaterThan(1);
  });
});
