import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  draftPair,
  ensureTinyModel,
  loadModelSpec,
  ModelRunner,
  referenceGenerate,
  samplingParams,
  type SamplingParams,
} from '@pdserve/model';
import { Tokenizer } from '@pdserve/tokenizer';
import { LLMEngine, type EngineOptions } from './index';
import { proposeNgram, SpecController, SpecGovernor } from './speculative';

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
      // The draft's model thread dies (as if it crashed).
      await (e as unknown as { draft: { close(): Promise<void> } }).draft.close();
      expect(await collect(e, prompts[4]!, greedy)).toEqual(expected.draft[4]);
      expect(e.stats().speculation!.draftFailure).toMatch(/closed/);
      expectIdle(e);
    });
  }, 60_000);

  it('logprobs of speculated tokens are those of the reference loop', async () => {
    const withLogprobs = samplingParams({ ...greedy, logprobs: 2 });
    const ref = await referenceGenerate(runner, prompts[2]!, withLogprobs);
    await withEngine({ speculative: { method: 'draft', modelDir: draft, numTokens: 4 } }, async (e) => {
      const got: { tokenId: number; logprob: number; top: number[] }[] = [];
      for await (const o of e.generate({ requestId: 'lp', promptTokenIds: prompts[2]!, sampling: withLogprobs })) {
        o.tokenIds.forEach((t, j) =>
          got.push({ tokenId: t, logprob: o.logprobs![j]!.logprob, top: o.logprobs![j]!.top.map((x) => x.tokenId) }),
        );
      }
      expect(e.stats().speculation!.acceptedTokens).toBeGreaterThan(0);
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

describe('speculation controller', () => {
  it('turns a sequence with no acceptance off after a few steps, probes with back-off, and turns back on', () => {
    const c = new SpecController(4);
    let speculated = 0;
    for (let step = 0; step < 400; step++) {
      const k = c.next();
      if (k > 0) {
        speculated++;
        c.record(k, 0);
      }
    }
    expect(speculated).toBeLessThanOrEqual(4); // 1 to turn off, then probes after 32, 64 and 128 steps
    expect(c.next()).toBe(0);
    const d = new SpecController(4);
    expect(d.next()).toBe(2); // a new sequence starts at K/2
    d.record(2, 0);
    let probe = 0;
    for (let i = 0; i < 40 && (probe = d.next()) === 0; i++);
    expect(probe).toBe(2);
    d.record(2, 2); // a good probe
    expect(d.next()).toBe(4);
    const e = new SpecController(4);
    e.record(2, 2);
    expect(e.next()).toBe(4); // one fully accepted step: the full length
  });
});

describe('speculation governor', () => {
  /** Runs `steps` decode steps of `batch` rows: plain ones cost 1 s per token, speculating ones `specCost`. */
  function drive(g: SpecGovernor, batch: number, steps: number, specCost: number): number {
    let speculated = 0;
    for (let i = 0; i < steps; i++) {
      const spec = g.allow(batch);
      if (spec) speculated++;
      g.record(batch, spec, batch * (spec ? specCost : 1), batch);
    }
    return speculated;
  }

  it('keeps speculating where it pays, re-measuring the plain cost now and then', () => {
    const n = drive(new SpecGovernor(), 8, 200, 0.5);
    expect(n).toBeGreaterThan(180);
    expect(n).toBeLessThan(200);
  });

  it('is not fooled by bursts of load on either side', () => {
    // Every third step of either kind takes 20 times as long (another process took the cores).
    const noisy = (specCost: number): number => {
      const g = new SpecGovernor();
      let speculated = 0;
      for (let i = 0; i < 300; i++) {
        const spec = g.allow(4);
        if (spec) speculated++;
        const burst = i % 3 === 0 ? 20 : 1;
        g.record(4, spec, 4 * (spec ? specCost : 1) * burst, 4);
      }
      return speculated;
    };
    expect(noisy(0.6)).toBeGreaterThan(250);
    expect(noisy(1.6)).toBeLessThan(60);
  });

  it('decodes plainly where speculation costs more per token, trying again now and then, per batch size', () => {
    const g = new SpecGovernor();
    expect(drive(g, 32, 400, 2)).toBeLessThan(30);
    // Another batch size is judged on its own.
    expect(drive(g, 1, 100, 0.5)).toBeGreaterThan(85);
  });
});
