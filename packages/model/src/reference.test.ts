// The oracle itself is checked two ways: against an independent implementation (transformers.js on the
// same files) and against its own batch/cache variants through the ModelRunner.
import { AutoModelForCausalLM, env, Tensor, type PreTrainedModel } from '@huggingface/transformers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Tokenizer } from '@pdserve/tokenizer';
import { ensureTinyModel, loadModelSpec, ModelRunner, referenceGenerate, samplingParams, type ModelSpec } from './index';

let dir: string;
let spec: ModelSpec;
let runner: ModelRunner;
let tokenizer: Tokenizer;

const PROMPTS = [
  'Hello world',
  'The quick brown fox jumps over the lazy dog.',
  'Once upon a time, in a land far away,',
  'What is the capital of France?',
  'def fibonacci(n):\n    return',
  '1, 2, 3, 4, 5,',
  '東京は日本の首都です。',
  'Disaggregated prefill and decode 🚀',
  'a',
];

beforeAll(async () => {
  dir = await ensureTinyModel();
  spec = loadModelSpec(dir);
  runner = await ModelRunner.create(spec);
  tokenizer = await Tokenizer.fromDir(dir);
});
afterAll(async () => {
  await runner?.release();
});

describe('reference generator', () => {
  it('is token-identical to transformers.js generate() on the same files for 9 prompts', async () => {
    env.allowRemoteModels = false;
    env.allowLocalModels = true;
    const model: PreTrainedModel = await AutoModelForCausalLM.from_pretrained(dir, { dtype: 'fp32', device: 'cpu' });
    try {
      const distinct = new Set<string>();
      for (const text of PROMPTS) {
        const ids = tokenizer.encode(text);
        const ours = await referenceGenerate(runner, ids, samplingParams({ temperature: 0, maxTokens: 24, ignoreEos: true }));
        const out = (await model.generate({
          input_ids: new Tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]),
          attention_mask: new Tensor('int64', new BigInt64Array(ids.length).fill(1n), [1, ids.length]),
          max_new_tokens: 24,
          do_sample: false,
          eos_token_id: [],
        } as Parameters<PreTrainedModel['generate']>[0])) as Tensor;
        const theirs = Array.from(out.data as BigInt64Array, Number).slice(ids.length);
        expect(ours.tokenIds, text).toEqual(theirs);
        distinct.add(theirs.join(','));
      }
      expect(distinct.size).toBe(PROMPTS.length);
    } finally {
      await model.dispose();
    }
  });

  it('with the KV cache equals full recomputation without it', async () => {
    const ids = tokenizer.encode('Paged attention keeps KV in blocks');
    const cached = await referenceGenerate(runner, ids, samplingParams({ temperature: 0, maxTokens: 12, ignoreEos: true }));
    const recomputed: number[] = [];
    let seq = [...ids];
    for (let i = 0; i < 12; i++) {
      const r = await runner.forward({ rows: [{ tokenIds: seq, pastLen: 0 }], pastWidth: 0 });
      let best = 0;
      for (let v = 1; v < spec.vocabSize; v++) if (r.logits[v]! > r.logits[best]!) best = v;
      recomputed.push(best);
      seq = [...seq, best];
    }
    expect(cached.tokenIds).toEqual(recomputed);
  });

  it('a left-padded batch of different-length prompts equals each prompt alone', async () => {
    const prompts = PROMPTS.slice(0, 6).map((t) => tokenizer.encode(t));
    const steps = 10;
    const alone = await Promise.all(
      prompts.map(
        async (p) => (await referenceGenerate(runner, p, samplingParams({ temperature: 0, maxTokens: steps, ignoreEos: true }))).tokenIds,
      ),
    );
    const argmax = (l: Float32Array, b: number): number => {
      let best = 0;
      const row = l.subarray(b * spec.vocabSize, (b + 1) * spec.vocabSize);
      for (let v = 1; v < row.length; v++) if (row[v]! > row[best]!) best = v;
      return best;
    };
    let res = await runner.forward({ rows: prompts.map((p) => ({ tokenIds: p, pastLen: 0 })), pastWidth: 0 });
    const got: number[][] = prompts.map(() => []);
    // The prefill above left-pads new tokens; from here on past is right-aligned in a window of `width`.
    let width = Math.max(...prompts.map((p) => p.length));
    const lens = prompts.map((p) => p.length);
    for (let s = 0; s < steps; s++) {
      const next = prompts.map((_, b) => argmax(res.logits, b));
      next.forEach((t, b) => got[b]!.push(t));
      if (s === steps - 1) break;
      res = await runner.forward({ rows: next.map((t, b) => ({ tokenIds: [t], pastLen: lens[b]! })), pastWidth: width, past: res.present });
      width += 1;
      lens.forEach((_, b) => (lens[b]! += 1));
    }
    expect(got).toEqual(alone);
  });

  it('seeded sampling: the same seed gives the same tokens, different seeds differ', async () => {
    const ids = tokenizer.encode('Sampling with a seed');
    const run = (seed: number) => referenceGenerate(runner, ids, samplingParams({ temperature: 1, seed, maxTokens: 16, ignoreEos: true }));
    const a = await run(1);
    const b = await run(1);
    const c = await run(2);
    expect(a.tokenIds).toEqual(b.tokenIds);
    expect(c.tokenIds).not.toEqual(a.tokenIds);
  });

  it('stops at max tokens, at a stop token id, and refuses a prompt past the context', async () => {
    const ids = tokenizer.encode('Stop here');
    const free = await referenceGenerate(runner, ids, samplingParams({ temperature: 0, maxTokens: 8, ignoreEos: true }));
    expect(free.finishReason).toBe('length');
    const stopAt = free.tokenIds[3]!;
    const stopped = await referenceGenerate(runner, ids, samplingParams({ temperature: 0, maxTokens: 8, stopTokenIds: [stopAt] }));
    expect(stopped.tokenIds).toEqual(free.tokenIds.slice(0, free.tokenIds.indexOf(stopAt) + 1));
    expect(stopped.finishReason).toBe('stop');
    await expect(referenceGenerate(runner, new Array(5000).fill(100), samplingParams({ maxTokens: 1 }))).rejects.toThrow(
      /prompt has 5000 tokens; the model's context is 4096 tokens/,
    );
  });
});
