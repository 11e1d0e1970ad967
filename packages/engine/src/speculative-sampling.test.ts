// Rejection sampling keeps the target's distribution: the joint frequencies of the first three sampled
// tokens over many seeds, with and without speculation, against the probabilities the target model gives
// them (computed here from its logits, not through the engine or the sampler), by a chi-square test.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { draftPair, ensureTinyModel, loadModelSpec, ModelRunner, samplingParams, type SamplingParams } from '@pdserve/model';
import { LLMEngine, type SpeculativeOptions } from './index';

const PAIR = draftPair({}, 1, 0.3);
let target: string;
let draft: string;
/** A draft that shares nothing with the target but the tokenizer: nearly every proposal is rejected. */
let unrelated: string;
let runner: ModelRunner;

beforeAll(async () => {
  target = await ensureTinyModel(PAIR.target);
  draft = await ensureTinyModel(PAIR.draft);
  unrelated = await ensureTinyModel({ layers: 1, seed: 1 });
  runner = await ModelRunner.create(loadModelSpec(target));
}, 120_000);
afterAll(async () => {
  await runner?.release();
});

const PROMPT = [1, 415, 3681, 338, 263, 1243, 29892, 322];
const SAMPLES = 500;
const TOP_K = 3;
const plain = samplingParams({ temperature: 1, topK: TOP_K, maxTokens: 5, ignoreEos: true });
// A bias toward a few tokens (also in the prompt) makes the output repeat, so that n-gram lookup proposes something.
const biased = samplingParams({ ...plain, logitBias: { 500: 30, 501: 30, 502: 30, 503: 30 } });
const promptFor = (p: SamplingParams): number[] => (p.logitBias ? [...PROMPT, 500, 501, 502, 503] : PROMPT);

/** P(first three tokens = a, b, c) under the target: softmax over the top-k of (logits + bias) / T, chained. */
async function jointProbabilities(params: SamplingParams): Promise<Map<string, number>> {
  const prompt = promptFor(params);
  const V = runner.spec.vocabSize;
  const next = async (ctx: number[]): Promise<[number, number][]> => {
    const res = await runner.forward({ rows: [{ tokenIds: ctx, pastLen: 0 }], pastWidth: 0 });
    const row = Array.from(res.logits.subarray(0, V), (x, i) => x + (params.logitBias?.[i] ?? 0));
    const top = row
      .map((x, i) => [x, i] as const)
      .sort((a, b) => b[0] - a[0])
      .slice(0, TOP_K);
    const z = top.reduce((s, [x]) => s + Math.exp((x - top[0]![0]) / params.temperature), 0);
    return top.map(([x, i]) => [i, Math.exp((x - top[0]![0]) / params.temperature) / z]);
  };
  const out = new Map<string, number>();
  for (const [a, pa] of await next(prompt)) {
    for (const [b, pb] of await next([...prompt, a])) {
      for (const [c, pc] of await next([...prompt, a, b])) out.set(`${a} ${b} ${c}`, pa * pb * pc);
    }
  }
  return out;
}

/** First three tokens of one seeded request per seed, all requests in flight at once. */
async function sampleMany(speculative: SpeculativeOptions | undefined, params: SamplingParams, seeds: number): Promise<string[]> {
  const engine = await LLMEngine.create({ modelDir: target, kvCacheBytes: 64 << 20, maxNumSeqs: 128, speculative });
  try {
    const got = await Promise.all(
      Array.from({ length: seeds }, async (_, seed) => {
        const tokens: number[] = [];
        for await (const o of engine.generate({ requestId: `s${seed}`, promptTokenIds: promptFor(params), sampling: { ...params, seed } }))
          tokens.push(...o.tokenIds);
        return tokens.slice(0, 3).join(' ');
      }),
    );
    const s = engine.stats().speculation;
    if (speculative) {
      // Speculation happened (and was rejected at least sometimes).
      expect(s!.acceptedTokens).toBeLessThan(s!.draftTokens);
    }
    return got;
  } finally {
    await engine.close();
  }
}

/**
 * Pearson's chi-square statistic of `observed` against `probs` (cells expected below 5 pooled) and the
 * critical value at significance 1e-3 (Wilson–Hilferty).
 */
function chiSquare(observed: readonly string[], probs: ReadonlyMap<string, number>): { stat: number; critical: number; df: number } {
  const counts = new Map<string, number>();
  for (const k of observed) counts.set(k, (counts.get(k) ?? 0) + 1);
  const n = observed.length;
  let stat = 0;
  let cells = 0;
  let pooledExpected = 0;
  let pooledObserved = 0;
  for (const [k, p] of probs) {
    const e = p * n;
    if (e < 5) {
      pooledExpected += e;
      pooledObserved += counts.get(k) ?? 0;
    } else {
      stat += ((counts.get(k) ?? 0) - e) ** 2 / e;
      cells++;
    }
  }
  // Whatever the model cannot produce lands in the pooled cell too (and must be rare).
  for (const [k, c] of counts) if (!probs.has(k)) pooledObserved += c;
  if (pooledExpected > 0) {
    stat += (pooledObserved - pooledExpected) ** 2 / Math.max(pooledExpected, 1e-9);
    cells++;
  }
  const df = cells - 1;
  const z = 3.09; // one-sided 1e-3
  const critical = df * (1 - 2 / (9 * df) + z * Math.sqrt(2 / (9 * df))) ** 3;
  return { stat, critical, df };
}

describe('rejection sampling keeps the target distribution (chi-square, 500 seeds each)', () => {
  const cases: [string, () => SpeculativeOptions | undefined, SamplingParams][] = [
    ["no speculation (the test's control)", () => undefined, plain],
    // `seeded`: seeded requests speculate (off by default), so that the test is deterministic.
    ['draft that mostly agrees, K=2', () => ({ method: 'draft', modelDir: draft, numTokens: 2, seeded: true }), plain],
    ['unrelated draft (mostly rejected), K=2', () => ({ method: 'draft', modelDir: unrelated, numTokens: 2, seeded: true }), plain],
    ['n-gram lookup, K=3', () => ({ method: 'ngram', numTokens: 3, ngramMin: 1, ngramMax: 2, seeded: true }), biased],
  ];
  for (const [name, spec, params] of cases) {
    it(name, async () => {
      const probs = await jointProbabilities(params);
      const got = await sampleMany(spec(), params, SAMPLES);
      const { stat, critical, df } = chiSquare(got, probs);
      expect(df).toBeGreaterThan(3);
      expect(stat, `chi-square ${stat.toFixed(1)} on ${df} df (critical ${critical.toFixed(1)})`).toBeLessThan(critical);
    }, 60_000);
  }

  it("the test can fail: the draft model's own distribution is rejected", async () => {
    const draftRunner = await ModelRunner.create(loadModelSpec(unrelated));
    const saved = runner;
    runner = draftRunner;
    try {
      const draftProbs = await jointProbabilities(plain);
      runner = saved;
      const got = await sampleMany(undefined, plain, SAMPLES);
      const probsOfTarget = await jointProbabilities(plain);
      expect(chiSquare(got, probsOfTarget).stat).toBeLessThan(chiSquare(got, probsOfTarget).critical);
      // Target samples judged against the draft's probabilities fail.
      const { stat, critical } = chiSquare(got, draftProbs);
      expect(stat).toBeGreaterThan(critical);
    } finally {
      runner = saved;
      await draftRunner.release();
    }
  }, 60_000);

  it('seeded requests that speculate (seeded: true) are reproducible run to run', async () => {
    const spec: SpeculativeOptions = { method: 'draft', modelDir: draft, numTokens: 4, seeded: true };
    const long = { ...plain, maxTokens: 24 };
    const a = await sampleManyFull(spec, long, 12);
    const b = await sampleManyFull(spec, long, 12);
    expect(b).toEqual(a);
  }, 60_000);

  it('by default seeded sampled requests do not speculate: the same tokens as without speculation', async () => {
    const long = { ...plain, maxTokens: 24 };
    const on = await sampleManyFull({ method: 'draft', modelDir: draft, numTokens: 4 }, long, 8);
    const off = await sampleManyFull(undefined, long, 8);
    expect(on).toEqual(off);
  }, 60_000);
});

async function sampleManyFull(speculative: SpeculativeOptions | undefined, params: SamplingParams, seeds: number): Promise<number[][]> {
  const engine = await LLMEngine.create({ modelDir: target, kvCacheBytes: 64 << 20, speculative });
  try {
    return await Promise.all(
      Array.from({ length: seeds }, async (_, seed) => {
        const tokens: number[] = [];
        for await (const o of engine.generate({ requestId: `s${seed}`, promptTokenIds: PROMPT, sampling: { ...params, seed } }))
          tokens.push(...o.tokenIds);
        return tokens;
      }),
    );
  } finally {
    await engine.close();
  }
}
