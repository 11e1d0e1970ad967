import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTinyModel, loadModelSpec, ModelRunner, referenceGenerate, samplingParams, type SamplingParams } from '@pdserve/model';
import { EngineError, LLMEngine, type EngineOptions } from './index';

let dir: string;
let runner: ModelRunner;

/** Deterministic pseudo-random prompts of varied lengths. */
function makePrompts(n: number, seed: number, minLen = 3, maxLen = 90): number[][] {
  let s = seed >>> 0;
  const next = (): number => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0), s / 2 ** 32);
  return Array.from({ length: n }, () => {
    const len = minLen + Math.floor(next() * (maxLen - minLen));
    return [1, ...Array.from({ length: len }, () => 3 + Math.floor(next() * 31990))];
  });
}

async function reference(prompts: number[][], params: SamplingParams): Promise<number[][]> {
  const out: number[][] = [];
  for (const p of prompts) out.push([...(await referenceGenerate(runner, p, params)).tokenIds]);
  return out;
}

async function collect(
  engine: LLMEngine,
  prompt: number[],
  params: SamplingParams,
  id = 'r',
): Promise<{ tokens: number[]; cached: number; finish?: string }> {
  const tokens: number[] = [];
  let cached = 0;
  let finish: string | undefined;
  for await (const o of engine.generate({ requestId: id, promptTokenIds: prompt, sampling: params })) {
    tokens.push(...o.tokenIds);
    cached = o.cachedTokens;
    finish = o.finishReason ?? finish;
  }
  return { tokens, cached, finish };
}

async function withEngine<T>(opts: Partial<EngineOptions>, fn: (e: LLMEngine) => Promise<T>): Promise<T> {
  const engine = await LLMEngine.create({ modelDir: dir, ...opts });
  try {
    return await fn(engine);
  } finally {
    await engine.close();
  }
}

beforeAll(async () => {
  dir = await ensureTinyModel();
  runner = await ModelRunner.create(loadModelSpec(dir));
});
afterAll(async () => {
  await runner?.release();
});

const greedy = samplingParams({ temperature: 0, maxTokens: 20 });

describe('correctness contract: the engine matches the reference loop token for token', () => {
  const prompts = makePrompts(32, 7);
  let expected: number[][];
  beforeAll(async () => {
    expected = await reference(prompts, greedy);
  });

  for (const concurrency of [1, 8, 32]) {
    for (const chunk of [32, 0]) {
      it(`greedy, ${concurrency} concurrent, chunked prefill ${chunk ? `on (${chunk})` : 'off'}`, async () => {
        await withEngine({ prefillChunkTokens: chunk, maxNumSeqs: 32 }, async (engine) => {
          const got: number[][] = new Array(prompts.length);
          for (let i = 0; i < prompts.length; i += concurrency) {
            const wave = prompts.slice(i, i + concurrency);
            const res = await Promise.all(wave.map((p, j) => collect(engine, p, greedy, `r${i + j}`)));
            res.forEach((r, j) => (got[i + j] = r.tokens));
          }
          expect(got).toEqual(expected);
          expect(engine.stats().usedBlocks).toBe(0);
        });
      });
    }
  }

  it('seeded sampling matches the reference with 16 concurrent requests', async () => {
    const sp = (i: number): SamplingParams => samplingParams({ temperature: 0.9, topP: 0.95, seed: 1000 + i, maxTokens: 16 });
    const subset = prompts.slice(0, 16);
    const want: number[][] = [];
    for (let i = 0; i < subset.length; i++) want.push([...(await referenceGenerate(runner, subset[i]!, sp(i))).tokenIds]);
    await withEngine({ prefillChunkTokens: 16 }, async (engine) => {
      const got = await Promise.all(subset.map((p, i) => collect(engine, p, sp(i), `s${i}`)));
      expect(got.map((g) => g.tokens)).toEqual(want);
    });
  });
});

describe("greedy rows take the model's argmax; rows that need the logits get them", () => {
  it('greedy requests decoding beside ones with logprobs, a logit bias and a penalty all match the reference', async () => {
    const prompts = makePrompts(4, 11, 8, 40);
    const params = [
      greedy,
      samplingParams({ temperature: 0, maxTokens: 20, logprobs: 2 }),
      samplingParams({ temperature: 0, maxTokens: 20, logitBias: { 42: 10 } }),
      samplingParams({ temperature: 0, maxTokens: 20, repetitionPenalty: 1.5 }),
    ];
    const want = await Promise.all(prompts.map((p, i) => referenceGenerate(runner, p, params[i]!)));
    // The bias changes what greedy alone picks, or this test could not tell.
    expect(want[2]!.tokenIds).not.toEqual((await referenceGenerate(runner, prompts[2]!, greedy)).tokenIds);
    await withEngine({ maxNumSeqs: 8 }, async (engine) => {
      const got = await Promise.all(
        prompts.map(async (p, i) => {
          const tokens: number[] = [];
          const logprobs: number[] = [];
          for await (const o of engine.generate({ requestId: `m${i}`, promptTokenIds: p, sampling: params[i]! })) {
            tokens.push(...o.tokenIds);
            for (const l of o.logprobs ?? []) logprobs.push(l.logprob);
          }
          return { tokens, logprobs };
        }),
      );
      expect(got.map((g) => g.tokens)).toEqual(want.map((w) => [...w.tokenIds]));
      expect(got[1]!.logprobs).toHaveLength(20);
      got[1]!.logprobs.forEach((l, j) => expect(l).toBeCloseTo(want[1]!.logprobs[j]!.logprob, 4));
    });
  });
});

describe('prefix cache', () => {
  it('a cached prefix skips compute and gives the same tokens', async () => {
    const shared = makePrompts(1, 99, 100, 101)[0]!;
    const a = [...shared, 5, 6, 7];
    const b = [...shared, 8, 9];
    const [wantA, wantB] = await reference([a, b], greedy);
    await withEngine({}, async (engine) => {
      const ra = await collect(engine, a, greedy);
      expect(ra.cached).toBe(0);
      const rb = await collect(engine, b, greedy);
      expect(rb.tokens).toEqual(wantB);
      expect(ra.tokens).toEqual(wantA);
      // The shared 101 tokens span 6 full blocks of 16.
      expect(rb.cached).toBe(96);
      const s = engine.stats();
      expect(s.prefixCacheHitTokens).toBe(96);
      expect(s.prefixCacheQueryTokens).toBe(a.length + b.length);
      // The identical prompt again: everything but the last block's worth comes from cache.
      const again = await collect(engine, a, greedy);
      expect(again.tokens).toEqual(wantA);
      expect(again.cached).toBe(96);
    });
  });

  it('a waiting request counts only the prompt it will compute as queued prefill, not its cached prefix', async () => {
    const shared = makePrompts(1, 98, 100, 101)[0]!;
    const long = samplingParams({ temperature: 0, maxTokens: 60, ignoreEos: true });
    await withEngine({ maxNumSeqs: 1 }, async (engine) => {
      await collect(engine, [...shared, 5], greedy, 'warm'); // caches the 6 full blocks of `shared`
      const busy = collect(engine, [1, 2, 3], long, 'busy'); // holds the only slot
      await waitUntil(() => engine.stats().running === 1);
      const waiting = collect(engine, [...shared, 8, 9, 10], greedy, 'waiting');
      await waitUntil(() => engine.stats().waiting === 1);
      // 101 + 3 tokens, 96 of them cached: 7 to compute (the last token's KV comes with decoding), not 103.
      // The decoding request adds its token or two not computed yet.
      const queued = engine.stats().queuedPrefillTokens;
      expect(queued).toBeGreaterThanOrEqual(shared.length + 3 - 1 - 96);
      expect(queued).toBeLessThan(shared.length + 3 - 1 - 96 + 4);
      await Promise.all([busy, waiting]);
      expect((await waiting).cached).toBe(96);
    });
  });
});

async function waitUntil(cond: () => boolean, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 1));
  }
}

describe('preemption and limits', () => {
  it('a flood larger than the pool completes by preempting and recomputing, with identical tokens', async () => {
    const prompts = makePrompts(24, 3, 40, 80);
    const params = samplingParams({ temperature: 0, maxTokens: 40, ignoreEos: true });
    const want = await reference(prompts, params);
    // 40 blocks of 16 tokens hold ~5 of these sequences at full length.
    const blockBytes = 4 * 2 * 2 * 16 * 32 * 4;
    await withEngine({ kvCacheBytes: 40 * blockBytes, prefillChunkTokens: 32 }, async (engine) => {
      let maxUsed = 0;
      const timer = setInterval(() => (maxUsed = Math.max(maxUsed, engine.stats().usedBlocks)), 1);
      const got = await Promise.all(prompts.map((p, i) => collect(engine, p, params, `f${i}`)));
      clearInterval(timer);
      expect(got.map((g) => g.tokens)).toEqual(want);
      const s = engine.stats();
      expect(s.preemptions).toBeGreaterThan(0);
      expect(maxUsed).toBeLessThanOrEqual(40);
      expect(s.usedBlocks).toBe(0);
    });
  });

  it('rejects what can never fit, an empty prompt, bad token ids and a prompt past the context', async () => {
    const blockBytes = 4 * 2 * 2 * 16 * 32 * 4;
    await withEngine({ kvCacheBytes: 4 * blockBytes, maxModelLen: 512 }, async (engine) => {
      const run = (prompt: number[], maxTokens = 8) => collect(engine, prompt, samplingParams({ temperature: 0, maxTokens }));
      await expect(run([1, 2, 3], 100)).rejects.toThrow(/KV blocks/);
      await expect(run([])).rejects.toBeInstanceOf(EngineError);
      await expect(run([1, 99999])).rejects.toThrow(/outside the vocabulary/);
      await expect(run(new Array(600).fill(5))).rejects.toThrow(/maximum context length is 512/);
      // Still serving afterwards.
      expect((await run([1, 2, 3], 4)).tokens).toHaveLength(4);
    });
  });

  it('queue full is reported as such', async () => {
    await withEngine({ maxWaiting: 1, maxNumSeqs: 1 }, async (engine) => {
      const params = samplingParams({ temperature: 0, maxTokens: 30, ignoreEos: true });
      const first = collect(engine, [1, 2, 3], params, 'a');
      const second = collect(engine, [1, 2, 4], params, 'b');
      await new Promise((r) => setTimeout(r, 5));
      await expect(collect(engine, [1, 2, 5], params, 'c')).rejects.toMatchObject({ code: 'queue_full' });
      await Promise.all([first, second]);
    });
  });
});

describe('cancellation', () => {
  it('an aborted request frees its blocks at once and others are unaffected', async () => {
    const [p1, p2] = makePrompts(2, 11, 60, 70);
    const params = samplingParams({ temperature: 0, maxTokens: 200, ignoreEos: true });
    const [want2] = await reference([p2!], samplingParams({ temperature: 0, maxTokens: 30, ignoreEos: true }));
    await withEngine({}, async (engine) => {
      const ac = new AbortController();
      const seen: number[] = [];
      let finish: string | undefined;
      const reading = (async () => {
        for await (const o of engine.generate({ requestId: 'x', promptTokenIds: p1!, sampling: params, signal: ac.signal })) {
          seen.push(...o.tokenIds);
          finish = o.finishReason ?? finish;
          if (seen.length === 5) ac.abort();
        }
      })();
      const other = collect(engine, p2!, samplingParams({ temperature: 0, maxTokens: 30, ignoreEos: true }));
      await reading;
      expect(finish).toBe('abort');
      expect(seen.length).toBeLessThan(200);
      expect((await other).tokens).toEqual(want2);
      expect(engine.stats().usedBlocks).toBe(0);
      expect(engine.stats().running + engine.stats().waiting).toBe(0);
    });
  });

  it('a reader that stops iterating cancels the request', async () => {
    await withEngine({}, async (engine) => {
      const params = samplingParams({ temperature: 0, maxTokens: 500, ignoreEos: true });
      let n = 0;
      for await (const o of engine.generate({ requestId: 'y', promptTokenIds: [1, 5, 6, 7], sampling: params })) {
        n += o.tokenIds.length;
        if (n >= 3) break;
      }
      await new Promise((r) => setTimeout(r, 20));
      expect(engine.stats().usedBlocks).toBe(0);
      expect(engine.stats().running).toBe(0);
    });
  });
});
