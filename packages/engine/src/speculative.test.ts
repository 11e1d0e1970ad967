import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  draftPair,
  ensureTinyModel,
  loadModelSpec,
  ModelRunner,
  QUANTIZATIONS,
  referenceGenerate,
  samplingParams,
  type SamplingParams,
} from '@pdserve/model';
import { Tokenizer } from '@pdserve/tokenizer';
import { LLMEngine, type EngineOptions } from './index';
import type { ExecBatch } from './executor';
import {
  BACKOFF_FIRST,
  BACKOFF_MAX,
  bestLength,
  expectedTokens,
  OFF_GAIN,
  ON_GAIN,
  PRIOR_COST,
  proposeNgram,
  SpecController,
  SpecGovernor,
  speculationGain,
  type SpecCost,
} from './speculative';

/** The synthetic pair (see draftPair): the draft is the target's first layer; the target's other 3 are scaled. */
const PAIR = draftPair({}, 1, 0.3);
let target: string;
let draft: string;
let runner: ModelRunner;

beforeAll(async () => {
  target = await ensureTinyModel(PAIR.target);
  draft = await ensureTinyModel(PAIR.draft);
  runner = await ModelRunner.create(loadModelSpec(target));
}, 120_000);
afterAll(async () => {
  await runner?.release();
});

function makePrompts(n: number, seed: number, minLen = 3, maxLen = 60): number[][] {
  let s = seed >>> 0;
  const next = (): number => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0), s / 2 ** 32);
  return Array.from({ length: n }, () => {
    const len = minLen + Math.floor(next() * (maxLen - minLen));
    return [1, ...Array.from({ length: len }, () => 3 + Math.floor(next() * 31990))];
  });
}

async function collect(engine: LLMEngine, prompt: readonly number[], params: SamplingParams, id = 'r'): Promise<number[]> {
  const tokens: number[] = [];
  for await (const o of engine.generate({ requestId: id, promptTokenIds: prompt, sampling: params })) tokens.push(...o.tokenIds);
  return tokens;
}

async function withEngine<T>(opts: Partial<EngineOptions>, fn: (e: LLMEngine) => Promise<T>): Promise<T> {
  const engine = await LLMEngine.create({ modelDir: target, kvCacheBytes: 64 << 20, ...opts });
  try {
    return await fn(engine);
  } finally {
    await engine.close();
  }
}

/** Every block is back in the pool (free or cached), and the draft holds nothing. */
function expectIdle(e: LLMEngine): void {
  const s = e.stats();
  expect(s.running + s.waiting).toBe(0);
  expect(s.usedBlocks).toBe(0);
  expect(s.speculation?.draftSequences ?? 0).toBe(0);
}

const greedy = samplingParams({ temperature: 0, maxTokens: 24, ignoreEos: true });

describe('speculative decoding: greedy output is token-identical to the reference loop', () => {
  const prompts = makePrompts(8, 11);
  // Random weights never repeat themselves, so n-gram lookup would find nothing: a logit bias toward a
  // few tokens makes the output repeat (which of them comes next is still the model's choice).
  const biased = samplingParams({ ...greedy, logitBias: { 500: 30, 501: 30, 502: 30, 503: 30 } });
  const paramsFor = { draft: greedy, ngram: biased };
  const expected = { draft: [] as number[][], ngram: [] as number[][] };
  beforeAll(async () => {
    for (const m of ['draft', 'ngram'] as const) {
      for (const p of prompts) expected[m].push([...(await referenceGenerate(runner, p, paramsFor[m])).tokenIds]);
    }
  });

  for (const method of ['draft', 'ngram'] as const) {
    for (const chunk of [0, 16]) {
      it(`${method}, K=4, chunked prefill ${chunk ? 'on' : 'off'}: batch 1 then all at once`, async () => {
        const speculative =
          method === 'draft' ? { method, modelDir: draft, numTokens: 4 } : { method, numTokens: 4, ngramMin: 1, ngramMax: 3 };
        await withEngine({ speculative, prefillChunkTokens: chunk, blockSize: 4 }, async (e) => {
          const params = paramsFor[method];
          const one = await collect(e, prompts[0]!, params);
          expect(one).toEqual(expected[method][0]);
          const all = await Promise.all(prompts.map((p, i) => collect(e, p, params, `r${i}`)));
          all.forEach((got, i) => expect(got, `prompt ${i}`).toEqual(expected[method][i]));
          const s = e.stats().speculation!;
          expect(s.method).toBe(method);
          expect(s.draftTokens).toBeGreaterThan(0);
          expect(s.acceptedTokens).toBeGreaterThan(0);
          if (method === 'draft') expect(s.acceptedTokens).toBeLessThan(s.draftTokens); // the pair agrees only partly
          expect(s.emittedTokens).toBe(s.acceptedTokens + s.verifiedSequenceSteps);
          expectIdle(e);
        });
      }, 60_000);
    }
  }

  // A quantized draft proposes differently from the float one, and the target's verify keeps the output exact.
  for (const quantize of QUANTIZATIONS) {
    it(`a draft with ${quantize} weights, K=4: batch 1 then all at once`, async () => {
      const quantized = await ensureTinyModel(draftPair({}, 1, 0.3, quantize).draft);
      await withEngine(
        { speculative: { method: 'draft', modelDir: quantized, numTokens: 4 }, prefillChunkTokens: 16, blockSize: 4 },
        async (e) => {
          expect(await collect(e, prompts[0]!, greedy)).toEqual(expected.draft[0]);
          const all = await Promise.all(prompts.map((p, i) => collect(e, p, greedy, `q${i}`)));
          all.forEach((got, i) => expect(got, `prompt ${i}`).toEqual(expected.draft[i]));
          const s = e.stats().speculation!;
          expect(s.acceptedTokens).toBeGreaterThan(0);
          expect(s.acceptedTokens).toBeLessThan(s.draftTokens);
          expectIdle(e);
        },
      );
    }, 60_000);
  }

  it('a draft that agrees with nothing (another seed): each sequence probes at most at steps 0, 33 and 98, output identical', async () => {
    const unrelated = await ensureTinyModel({ layers: 1, seed: 1 });
    const long = samplingParams({ temperature: 0, maxTokens: 120, ignoreEos: true });
    const want = await Promise.all(prompts.slice(0, 4).map(async (p) => [...(await referenceGenerate(runner, p, long)).tokenIds]));
    await withEngine({ speculative: { method: 'draft', modelDir: unrelated, numTokens: 4 } }, async (e) => {
      expect(await collect(e, prompts[0]!, long)).toEqual(want[0]);
      const one = e.stats().speculation!;
      expect(one.verifiedSequenceSteps).toBeLessThanOrEqual(3);
      const all = await Promise.all(prompts.slice(0, 4).map((p, i) => collect(e, p, long, `u${i}`)));
      all.forEach((got, i) => expect(got, `prompt ${i}`).toEqual(want[i]));
      // 119 decode steps per sequence: probes at 0, 33 and 98 (the governor may only put one off).
      expect(e.stats().speculation!.verifiedSequenceSteps - one.verifiedSequenceSteps).toBeLessThanOrEqual(4 * 3);
      expectIdle(e);
    });
  }, 120_000);

  it("a greedy step is one round trip to the model thread, the draft's catch-up included; a step nobody speculates is a plain one", async () => {
    const unrelated = await ensureTinyModel({ layers: 1, seed: 1 });
    const long = samplingParams({ temperature: 0, maxTokens: 120, ignoreEos: true });
    const want = [...(await referenceGenerate(runner, prompts[1]!, long)).tokenIds];
    await withEngine({ speculative: { method: 'draft', modelDir: unrelated, numTokens: 4 } }, async (e) => {
      const executor = (e as unknown as { executor: { run(b: ExecBatch): Promise<unknown> } }).executor;
      const batches: ExecBatch[] = [];
      const run = executor.run.bind(executor);
      executor.run = (b) => (batches.push(b), run(b));
      expect(await collect(e, prompts[1]!, long)).toEqual(want);
      const s = e.stats().speculation!;
      // One prefill, then 119 decode steps, each one message; the draft never gets one of its own.
      expect(batches.filter((b) => b.model === 'draft')).toEqual([]);
      expect(batches.filter((b) => b.kind === 'decode').length).toBe(119);
      // Probes at steps 0, 33 and 98, each catching the draft up (the prompt, then the tokens since) on the model thread.
      const probes = batches.filter((b) => b.draftFirst);
      expect(probes.length).toBe(3);
      expect(probes.map((b) => b.draftFirst!.catchUp)).toEqual([[true], [true], [true]]);
      expect(probes.map((b) => b.draftFirst!.rounds)).toEqual([[2], [1], [1]]);
      expect(s.verifiedSequenceSteps).toBe(3);
      expect(s.draftCatchUpTokens).toBe(prompts[1]!.length + 1 + 33 + 65);
      // Every other step is a plain decode step: one token, one row of logits.
      const plain = batches.filter((b) => b.kind === 'decode' && !b.draftFirst);
      expect(plain.every((b) => b.rows.every((r) => r.tokenIds.length === 1 && (r.numLogits ?? 1) === 1))).toBe(true);
      expectIdle(e);
    });
  }, 120_000);

  it('a KV pool too small for the batch: preemption, lookahead cut short, draft pool full; still identical, nothing leaked', async () => {
    // 4-token blocks of 2 KiB per token: 75 blocks, room for a third of the batch's tokens at once.
    await withEngine(
      { speculative: { method: 'draft', modelDir: draft, numTokens: 4 }, blockSize: 4, kvCacheBytes: 600 * 1024 },
      async (e) => {
        const all = await Promise.all(prompts.map((p, i) => collect(e, p, greedy, `p${i}`)));
        all.forEach((got, i) => expect(got, `prompt ${i}`).toEqual(expected.draft[i]));
        expect(e.stats().preemptions).toBeGreaterThan(0);
        expectIdle(e);
      },
    );
  }, 60_000);

  it('a draft model that fails mid-run turns speculation off; requests go on, identical', async () => {
    await withEngine({ speculative: { method: 'draft', modelDir: draft, numTokens: 4 } }, async (e) => {
      expect(await collect(e, prompts[3]!, greedy)).toEqual(expected.draft[3]);
      // The draft stops working (its session is released on the model thread: every draft forward fails).
      await (e as unknown as { draft: { close(): Promise<void> } }).draft.close();
      expect(await collect(e, prompts[4]!, greedy)).toEqual(expected.draft[4]);
      expect(e.stats().speculation!.draftFailure).toMatch(/closed/);
      expectIdle(e);
    });
  }, 60_000);

  it('logprobs of speculated tokens are those of the reference loop', async () => {
    const withLogprobs = samplingParams({ ...greedy, maxTokens: 48, logprobs: 2 });
    // A pair that agrees more, so that there are accepted tokens and corrections both (with the 0.3 pair
    // this prompt turns speculation off at its first probe).
    const closer = await ensureTinyModel(draftPair({}, 1, 0.05).draft);
    const closeTarget = await ensureTinyModel(draftPair({}, 1, 0.05).target);
    const closeRunner = await ModelRunner.create(loadModelSpec(closeTarget));
    const ref = await referenceGenerate(closeRunner, prompts[2]!, withLogprobs);
    await closeRunner.release();
    await withEngine({ modelDir: closeTarget, speculative: { method: 'draft', modelDir: closer, numTokens: 4 } }, async (e) => {
      const got: { tokenId: number; logprob: number; top: number[] }[] = [];
      for await (const o of e.generate({ requestId: 'lp', promptTokenIds: prompts[2]!, sampling: withLogprobs })) {
        o.tokenIds.forEach((t, j) =>
          got.push({ tokenId: t, logprob: o.logprobs![j]!.logprob, top: o.logprobs![j]!.top.map((x) => x.tokenId) }),
        );
      }
      const sp = e.stats().speculation!;
      expect(sp.acceptedTokens).toBeGreaterThan(0);
      expect(sp.acceptedTokens).toBeLessThan(sp.draftTokens);
      expect(got.map((g) => g.tokenId)).toEqual(ref.tokenIds);
      got.forEach((g, i) => {
        expect(g.logprob).toBeCloseTo(ref.logprobs[i]!.logprob, 3);
        expect(g.top).toEqual(ref.logprobs[i]!.topLogprobs!.map((x) => x.tokenId));
      });
    });
  }, 60_000);

  it('aborting speculating requests mid-stream leaks no block of either pool', async () => {
    await withEngine({ speculative: { method: 'draft', modelDir: draft, numTokens: 4 }, blockSize: 4 }, async (e) => {
      const long = samplingParams({ temperature: 0, maxTokens: 200, ignoreEos: true });
      await Promise.all(
        prompts.map(async (p, i) => {
          const ac = new AbortController();
          let n = 0;
          for await (const o of e.generate({ requestId: `a${i}`, promptTokenIds: p, sampling: long, signal: ac.signal })) {
            n += o.tokenIds.length;
            if (n >= 5 + i) ac.abort();
          }
        }),
      );
      await new Promise((r) => setTimeout(r, 50));
      expectIdle(e);
    });
  }, 60_000);
});

describe('a draft identical to the target (residual scale 0) has every proposal accepted', () => {
  it('through catch-ups, rollbacks, a draft pool too small for the batch, greedy and sampled', async () => {
    const same = draftPair({}, 1, 0);
    const t = await ensureTinyModel(same.target);
    const d = await ensureTinyModel(same.draft);
    // 8 draft blocks of 4 tokens: a few sequences at a time; the others wait, are released, catch up later.
    const engine = await LLMEngine.create({
      modelDir: t,
      kvCacheBytes: 64 << 20,
      blockSize: 4,
      speculative: { method: 'draft', modelDir: d, numTokens: 4, kvCacheBytes: 40 * 4 * 512, seeded: true },
    });
    try {
      const ps = makePrompts(6, 3, 3, 20);
      await Promise.all(
        ps.map((p, i) => collect(engine, p, i % 2 ? greedy : samplingParams({ ...greedy, temperature: 0.8, seed: i }), `q${i}`)),
      );
      const s = engine.stats().speculation!;
      expect(s.draftTokens).toBeGreaterThan(0);
      expect(s.acceptedTokens).toBe(s.draftTokens);
      expectIdle(engine);
    } finally {
      await engine.close();
    }
  }, 60_000);
});

describe('speculation and structured output', () => {
  it('a request with a grammar never speculates (a proposal would bypass the mask) and its output parses', async () => {
    await withEngine({ speculative: { method: 'draft', modelDir: draft, numTokens: 4 } }, async (e) => {
      const sampling = samplingParams({ temperature: 0, maxTokens: 60, structuredOutput: { kind: 'json_object' } });
      const tokens = await collect(e, makePrompts(1, 5)[0]!, sampling);
      expect(e.stats().speculation!.verifiedSequenceSteps).toBe(0);
      const text = (await Tokenizer.fromDir(target)).decode(tokens);
      if (tokens.length < 60) expect(() => JSON.parse(text)).not.toThrow();
      // A plain request on the same engine does speculate.
      await collect(e, makePrompts(1, 6)[0]!, greedy);
      expect(e.stats().speculation!.verifiedSequenceSteps).toBeGreaterThan(0);
      expectIdle(e);
    });
  }, 60_000);
});

describe('n-gram proposer', () => {
  it('proposes what followed the latest earlier occurrence of the longest matching suffix', () => {
    expect(proposeNgram([1, 2, 3, 4, 9, 2, 3], 2, 1, 3)).toEqual([4, 9]);
    expect(proposeNgram([5, 6, 7, 5, 6, 8, 5, 6], 3, 1, 2)).toEqual([8, 5, 6]);
    expect(proposeNgram([1, 2, 3], 4, 1, 3)).toEqual([]);
    expect(proposeNgram([7, 7, 7], 4, 1, 2)).toEqual([7]);
  });
});

/** Costs of the 16-layer pair at batch 1, in decode steps (see docs/benchmarks.md): cheap draft rounds, verify ≈ a step. */
const CHEAP: SpecCost = { draftRound: 0.28, verify: (k) => 1 + 0.05 * k };
/** A compute-bound batch: every verified token costs nearly a step. */
const DEAR: SpecCost = { draftRound: 0.3, verify: (k) => 1 + 0.8 * k };

/** Steps `c` speculates in `steps` steps when the target accepts `accept(step, k)` of its k proposals. */
function driveController(c: SpecController, steps: number, cost: SpecCost, accept: (step: number, k: number) => number): number[] {
  const speculated: number[] = [];
  for (let step = 0; step < steps; step++) {
    const k = c.next(cost);
    if (k === 0) continue;
    speculated.push(step);
    c.record(k, accept(step, k), cost);
  }
  return speculated;
}

describe('speculation controller', () => {
  it('expected tokens and gain follow the geometric acceptance model', () => {
    expect(expectedTokens(0, 4)).toBe(1);
    expect(expectedTokens(1, 4)).toBe(5);
    expect(expectedTokens(0.5, 2)).toBeCloseTo(1.75, 12);
    // A verify forward is never cheaper than a decode step, whatever was measured.
    expect(speculationGain(0, 2, { draftRound: 0, verify: () => 0.5 })).toBe(1);
    expect(bestLength(0.95, 4, CHEAP).k).toBe(4);
    expect(bestLength(0.95, 4, DEAR).gain).toBeLessThan(ON_GAIN);
  });

  it('a sequence whose proposals are never accepted probes at 0 (K/2 tokens), 33, 98, ... (1 token) with the wait doubling to 1024 steps', () => {
    const probes = driveController(new SpecController(4), 20_000, CHEAP, () => 0);
    const expected = [0];
    for (let wait = BACKOFF_FIRST; expected.at(-1)! + wait + 1 < 20_000; wait = Math.min(BACKOFF_MAX, wait * 2))
      expected.push(expected.at(-1)! + wait + 1);
    expect(probes).toEqual(expected);
    expect(probes.slice(0, 4)).toEqual([0, 33, 98, 227]);
    // In steady state a probe every 1025 steps (< 0.1 %), and ≤ 2 % of the first 200 steps.
    expect(probes.filter((s) => s >= 5_000).length).toBeLessThanOrEqual(Math.ceil(15_000 / (BACKOFF_MAX + 1)));
    expect(probes.filter((s) => s < 200).length / 200).toBeLessThanOrEqual(0.02);
  });

  it('a sequence that accepts everything starts with a K/2 probe, then proposes K', () => {
    const c = new SpecController(4);
    expect(c.next(CHEAP)).toBe(2);
    c.record(2, 2, CHEAP);
    expect(c.isOff).toBe(false);
    const ks: number[] = [];
    for (let i = 0; i < 50; i++) {
      const k = c.next(CHEAP);
      ks.push(k);
      c.record(k, k, CHEAP);
    }
    // The probe's 2 of 2 reads as a = 0.9 (the prior weighs in): K at once.
    expect(new Set(ks)).toEqual(new Set([4]));
  });

  it('keeps speculating at acceptance 0.6 where a round is cheap, stops where it is dear, and a weak probe does not restart it', () => {
    // Accept 3 of every 5 tried draft tokens: accepted, accepted, accepted, rejected... as a fixed cycle.
    const pattern = (step: number, k: number): number => Math.min(k, [2, 0, 3, 1, 2][step % 5]!);
    const cheap = new SpecController(4);
    expect(driveController(cheap, 200, CHEAP, pattern).length).toBe(200);
    const dear = new SpecController(4);
    const spec = driveController(dear, 400, DEAR, pattern);
    expect(spec.slice(0, 1)).toEqual([0]);
    expect(spec.length).toBeLessThan(10);
    expect(dear.isOff).toBe(true);
  });

  it('hysteresis: a probe must promise ON_GAIN (a running sequence stops only below break-even); later probes are one token', () => {
    const c: SpecCost = { draftRound: 0.3, verify: (k) => 1 + 0.45 * k };
    const off = new SpecController(4);
    expect(off.next(c)).toBe(2); // a new sequence's first probe: K/2
    off.record(2, 0, c);
    for (let i = 0; i < BACKOFF_FIRST; i++) expect(off.next(c)).toBe(0);
    expect(off.next(c)).toBe(1); // later probes: one token
    off.record(1, 1, c); // accepted: a = (1 + ¼) / (1 + ½) = 5/6, above break-even here but short of ON_GAIN
    expect(bestLength(5 / 6, 4, c).gain).toBeGreaterThanOrEqual(OFF_GAIN);
    expect(bestLength(5 / 6, 4, c).gain).toBeLessThan(ON_GAIN);
    expect(off.isOff).toBe(true);
    expect(off.next(c)).toBe(0);
    // The same holds for a new sequence: 2 of 2 (a = 0.9) gives 1.09 here, not enough.
    expect(bestLength(0.9, 4, c).gain).toBeLessThan(ON_GAIN);
    const fresh = new SpecController(4);
    fresh.record(fresh.next(c), 2, c);
    expect(fresh.isOff).toBe(true);
  });

  it('proposals that keep failing turn a sequence off even where a draft round is nearly free', () => {
    const cheap: SpecCost = { draftRound: 0.05, verify: () => 1 };
    const c = new SpecController(4);
    c.record(2, 2, cheap); // on
    let steps = 0;
    while (!c.isOff && steps < 100) {
      c.record(c.next(cheap), 0, cheap);
      steps++;
    }
    expect(c.isOff).toBe(true);
    expect(steps).toBeLessThanOrEqual(30);
  });
});

describe('speculation governor', () => {
  it('costs are medians of recent samples, as ratios to a plain step: bursts of load do not move them', () => {
    const g = new SpecGovernor();
    expect(g.cost(1)).toBe(PRIOR_COST);
    // Until four samples are in, the prior holds; wild ratios are clamped to what the work could explain.
    for (let i = 0; i < 3; i++) g.recordPlain(1, 0.01);
    expect(g.cost(1)).toBe(PRIOR_COST);
    g.recordPlain(1, 0.01);
    for (let i = 0; i < 4; i++) g.recordSpec(1, 4, 0.2, 4, 0.5);
    expect(g.cost(1).draftRound).toBe(1);
    expect(g.cost(1).verify(4)).toBe(5);
    for (let i = 0; i < 40; i++) {
      const burst = i % 3 === 0 ? 20 : 1; // every third sample: another process took the cores
      g.recordPlain(1, 0.01 * burst);
      g.recordSpec(1, 4, 0.012 * burst, 4, 0.011 * burst);
    }
    const c = g.cost(1);
    expect(c.draftRound).toBeCloseTo(0.3, 6);
    expect(c.verify(4)).toBeCloseTo(1.1, 6);
    // An unmeasured length scales from the nearest measured one as the prior does.
    expect(c.verify(2)).toBeCloseTo((1.1 * PRIOR_COST.verify(2)) / PRIOR_COST.verify(4), 6);
    // Another batch size has its own costs.
    expect(g.cost(8)).toBe(PRIOR_COST);
  });

  it('a cost model is the same object until the next sample of its batch size (worked out once, when read)', () => {
    const g = new SpecGovernor();
    for (let i = 0; i < 4; i++) {
      g.recordPlain(1, 0.01);
      g.recordSpec(1, 2, 0.006, 2, 0.012);
    }
    const c = g.cost(1);
    expect(g.cost(1)).toBe(c);
    expect(c.draftRound).toBeCloseTo(0.3, 6);
    expect(c.verify(2)).toBeCloseTo(1.2, 6);
    g.recordPlain(8, 0.02); // another bucket
    expect(g.cost(1)).toBe(c);
    g.recordPlain(1, 0.01);
    expect(g.cost(1)).not.toBe(c);
    expect(g.cost(1).verify(2)).toBeCloseTo(1.2, 6);
  });

  /** Steps of one sequence at batch 1 that accepts everything, its costs as given: returns which steps speculated. */
  function driveBatch(g: SpecGovernor, batch: number, steps: number, seconds: { plain: number; round: number; verify: number }): boolean[] {
    const c = new SpecController(4);
    const out: boolean[] = [];
    for (let i = 0; i < steps; i++) {
      const cost = g.cost(batch);
      const cand = { k: c.next(cost), controller: c };
      g.plan(batch, [cand]);
      out.push(cand.k > 0);
      if (cand.k > 0) {
        g.recordSpec(batch, cand.k, cand.k * seconds.round, cand.k, seconds.verify);
        c.record(cand.k, cand.k, cost);
      } else g.recordPlain(batch, seconds.plain);
    }
    return out;
  }

  it('re-measures the plain cost with one plain step now and then (< 2 % of steps once settled)', () => {
    const spec = driveBatch(new SpecGovernor(), 1, 3000, { plain: 0.009, round: 0.0025, verify: 0.0095 });
    const plain = spec.map((s, i) => (s ? -1 : i)).filter((i) => i >= 0);
    expect(plain.length).toBeGreaterThan(0);
    expect(plain.filter((i) => i >= 500).length / 2500).toBeLessThan(0.02);
    expect(plain.length / 3000).toBeLessThan(0.02);
  });

  it('a batch where speculation does not pay as a whole decodes plainly, speculating once more after 64, 128, ... steps', () => {
    const g = new SpecGovernor();
    for (let i = 0; i < 4; i++) {
      g.recordPlain(8, 0.03);
      g.recordSpec(8, 4, 0.04, 4, 0.1); // verify of 4 at 3.3 steps
    }
    // One row accepts everything, seven never speculate: 12 tokens for a cost of 8 × (0.44 + 3.3) plain steps.
    const good = new SpecController(4);
    good.record(2, 2, CHEAP); // on
    const tried: number[] = [];
    for (let i = 0; i < 300; i++) {
      const cand = { k: good.next(CHEAP), controller: good };
      g.plan(8, [cand]);
      if (cand.k > 0) tried.push(i);
    }
    expect(tried).toEqual([65, 195]); // each time judged again at once, and plain for twice as long
  });
});
