// Prompt logprobs on the tiny model: the logprob the engine reports for a prompt token equals the one it
// reported when it generated that token (greedy: rank 1), whether the prompt is computed in one chunk or
// several, and a prompt that asks for them never takes blocks from the prefix cache.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTinyModel, samplingParams } from '@pdserve/model';
import { LLMEngine, type GenerateOutput } from './index';

let dir: string;
const engines: LLMEngine[] = [];

beforeAll(async () => {
  dir = await ensureTinyModel();
});
afterAll(async () => {
  await Promise.all(engines.map((e) => e.close()));
});

async function drain(it: AsyncIterable<GenerateOutput>): Promise<GenerateOutput[]> {
  const outs: GenerateOutput[] = [];
  for await (const o of it) outs.push(o);
  return outs;
}

const prompt = [1, ...Array.from({ length: 40 }, (_, i) => 100 + ((i * 7919) % 5000))];

describe.each([
  ['one chunk', {}],
  ['chunks of 16 tokens', { prefillChunkTokens: 16 }],
] as const)('prompt logprobs, %s', (_name, opts) => {
  it('score each generated token as it was sampled, rank 1 under greedy; no prefix cache', async () => {
    const engine = await LLMEngine.create({ modelDir: dir, modelId: 'tiny', ...opts });
    engines.push(engine);
    const gen = await drain(
      engine.generate({
        requestId: 'g',
        promptTokenIds: prompt,
        sampling: samplingParams({ temperature: 0, maxTokens: 6, logprobs: 2, ignoreEos: true }),
      }),
    );
    const tokens = gen.flatMap((o) => o.tokenIds);
    const lps = gen.flatMap((o) => o.logprobs ?? []);
    const full = [...prompt, ...tokens];
    const outs = await drain(
      engine.generate({
        requestId: 'p',
        promptTokenIds: full,
        sampling: samplingParams({ temperature: 0, maxTokens: 1, promptLogprobs: 2 }),
      }),
    );
    const pl = outs[0]!.promptLogprobs!;
    expect(pl).toHaveLength(full.length - 1);
    expect(outs[0]!.cachedTokens).toBe(0); // the first request's blocks were cached, and not used
    pl.forEach((e, i) => expect(e.tokenId).toBe(full[i + 1]));
    tokens.forEach((t, j) => {
      const e = pl[prompt.length - 1 + j]!;
      expect(e.logprob).toBeCloseTo(lps[j]!.logprob, 3);
      expect(e.rank).toBe(1);
      expect(e.top[0]!.tokenId).toBe(t);
      expect(e.top.map((x) => x.tokenId)).toEqual(lps[j]!.top.map((x) => x.tokenId));
    });
    expect(pl.every((e) => e.logprob <= 0 && e.rank >= 1 && e.top.length === 2)).toBe(true);
    expect(outs.slice(1).every((o) => o.promptLogprobs === undefined)).toBe(true);
    expect(engine.stats().usedBlocks).toBe(0);
  });
});
