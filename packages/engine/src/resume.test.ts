// A migrated stream resumes from prompt + the tokens already generated: the rest must be exactly what an
// uninterrupted run produces, greedy and seeded, with penalties and min_tokens counting the resumed part.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTinyModel, loadModelSpec, ModelRunner, referenceGenerate, samplingParams, type SamplingParams } from '@pdserve/model';
import { EngineError, LLMEngine } from './index';

let dir: string;
let runner: ModelRunner;
let engine: LLMEngine;

beforeAll(async () => {
  dir = await ensureTinyModel();
  runner = await ModelRunner.create(loadModelSpec(dir));
  engine = await LLMEngine.create({ modelDir: dir, blockSize: 16 });
});
afterAll(async () => {
  await engine?.close();
  await runner?.release();
});

async function run(
  prompt: number[],
  sampling: SamplingParams,
  resumed: number[],
  id: string,
): Promise<{ tokens: number[]; finish?: string }> {
  const tokens: number[] = [];
  let finish: string | undefined;
  for await (const o of engine.generate({ requestId: id, promptTokenIds: prompt, sampling, resumeOutputTokenIds: resumed })) {
    tokens.push(...o.tokenIds);
    finish = o.finishReason ?? finish;
  }
  return { tokens, finish };
}

const prompt = [1, ...Array.from({ length: 37 }, (_, i) => 100 + ((i * 7919) % 3000))];
const cases: Record<string, SamplingParams> = {
  greedy: samplingParams({ temperature: 0, maxTokens: 24, ignoreEos: true }),
  seeded: samplingParams({ temperature: 0.9, topP: 0.95, seed: 1234, maxTokens: 24, ignoreEos: true }),
  'seeded with penalties': samplingParams({
    temperature: 1.1,
    topK: 50,
    seed: 7,
    repetitionPenalty: 1.3,
    frequencyPenalty: 0.5,
    presencePenalty: 0.2,
    maxTokens: 24,
    ignoreEos: true,
  }),
};

describe('resume after tokens generated elsewhere', () => {
  for (const [name, sampling] of Object.entries(cases)) {
    it(`${name}: every cut point continues token-identically to the reference loop`, async () => {
      const full = [...(await referenceGenerate(runner, prompt, sampling)).tokenIds];
      expect(full).toHaveLength(24);
      // Cuts inside a block, on a block boundary (prompt 38 + 10 = 48) and near the end.
      for (const cut of [1, 10, 11, 23]) {
        const rest = await run(prompt, sampling, full.slice(0, cut), `${name}-${cut}`);
        expect(rest.tokens, `cut at ${cut}`).toEqual(full.slice(cut));
        expect(rest.finish).toBe('length');
      }
    });
  }

  it('min_tokens counts the resumed tokens', async () => {
    const eos = loadModelSpec(dir).eosTokenIds;
    const sampling = samplingParams({ temperature: 0, maxTokens: 12, minTokens: 6 });
    const full = [...(await referenceGenerate(runner, prompt, sampling)).tokenIds];
    const rest = await run(prompt, sampling, full.slice(0, 3), 'min');
    expect(rest.tokens).toEqual(full.slice(3));
    expect(eos.length).toBeGreaterThan(0);
  });

  it('refuses a resume that is already complete, leaking no block', async () => {
    const sampling = samplingParams({ temperature: 0, maxTokens: 4 });
    const used = engine.pool.numUsed;
    await expect(run(prompt, sampling, [5, 6, 7, 8], 'done')).rejects.toBeInstanceOf(EngineError);
    await expect(run(prompt, sampling, [5, 99_999_999], 'bad')).rejects.toBeInstanceOf(EngineError);
    expect(engine.pool.numUsed).toBe(used);
  });
});
