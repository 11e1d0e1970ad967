// Cross-check with an independent implementation: transformers.js loads the directory offline and its
// greedy generate() must produce exactly our ORT loop's tokens.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AutoModelForCausalLM,
  AutoTokenizer,
  env,
  Tensor,
  type PreTrainedModel,
  type PreTrainedTokenizer,
} from '@huggingface/transformers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTinyModel } from '../tiny-cache';
import { buildTinyModel } from './index';
import { greedyCached, openTinyRun, type TinyRun } from './ort-greedy';

const PROMPTS = [
  'Hello world',
  'The quick brown fox jumps over the lazy dog.',
  'Once upon a time',
  'What is the capital of France?',
  'def fibonacci(n):',
  '1, 2, 3, 4,',
  'Il était une fois',
  'a',
  'Explain the KV cache in two sentences.',
];
const NEW_TOKENS = 20;

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'pdserve-tiny-tjs-'));
  // Offline: a local directory given by absolute path; never the hub.
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

interface Loaded {
  readonly tokenizer: PreTrainedTokenizer;
  readonly model: PreTrainedModel;
  readonly run: TinyRun;
}

async function load(dir: string): Promise<Loaded> {
  const tokenizer = await AutoTokenizer.from_pretrained(dir);
  const model = await AutoModelForCausalLM.from_pretrained(dir, {
    dtype: 'fp32',
    device: 'cpu',
    session_options: { intraOpNumThreads: 1 },
  });
  return { tokenizer, model, run: await openTinyRun(dir) };
}

async function release(l: Loaded): Promise<void> {
  await l.model.dispose();
  await l.run.session.release();
}

const encode = (l: Loaded, text: string): number[] => Array.from((l.tokenizer(text).input_ids as Tensor).data as BigInt64Array, Number);

/**
 * transformers.js greedy continuation of left-padded prompts (pad id 0, mask 0); it derives position_ids
 * from the mask itself. `eos_token_id: []` so it never stops early (our loop doesn't).
 */
async function transformersGreedy(l: Loaded, prompts: number[][], steps: number): Promise<number[][]> {
  const width = Math.max(...prompts.map((p) => p.length));
  const pad = (p: number[], fill: number, real: (t: number) => number): bigint[] =>
    [...Array<number>(width - p.length).fill(fill), ...p.map(real)].map(BigInt);
  const dims = [prompts.length, width];
  const input_ids = new Tensor('int64', BigInt64Array.from(prompts.flatMap((p) => pad(p, 0, (t) => t))), dims);
  const attention_mask = new Tensor('int64', BigInt64Array.from(prompts.flatMap((p) => pad(p, 0, () => 1))), dims);
  const out = (await l.model.generate({ input_ids, attention_mask, max_new_tokens: steps, do_sample: false, eos_token_id: [] })) as Tensor;
  const flat = Array.from(out.data as BigInt64Array, Number);
  const rowLen = out.dims[1]!;
  return prompts.map((_, b) => flat.slice(b * rowLen + width, (b + 1) * rowLen));
}

describe('transformers.js cross-check', () => {
  it('loads the default model (external data) offline and generates exactly our greedy tokens', async () => {
    const dir = join(root, 'default');
    await buildTinyModel({ out: dir });
    const l = await load(dir);
    try {
      const seen = new Set<string>();
      for (const text of PROMPTS) {
        const ids = encode(l, text);
        expect(ids[0]).toBe(1); // BOS added, as the tokenizer config says
        const [theirs] = await transformersGreedy(l, [ids], NEW_TOKENS);
        const ours = await greedyCached(l.run, ids, NEW_TOKENS);
        expect(theirs, text).toHaveLength(NEW_TOKENS);
        expect(theirs, text).toEqual(ours.tokens);
        seen.add(theirs.join(','));
      }
      expect(seen.size).toBe(PROMPTS.length);

      // Its own batching: one left-padded generate() over prompts of different lengths.
      const batch = PROMPTS.slice(0, 5).map((t) => encode(l, t));
      const theirs = await transformersGreedy(l, batch, 10);
      for (const [i, ids] of batch.entries()) expect(theirs[i], PROMPTS[i]).toEqual((await greedyCached(l.run, ids, 10)).tokens);
    } finally {
      await release(l);
    }
  });

  it('renders the Llama-2 chat template', async () => {
    const tokenizer = await AutoTokenizer.from_pretrained(join(root, 'default'));
    const text = tokenizer.apply_chat_template(
      [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hi there' },
      ],
      { tokenize: false, add_generation_prompt: true },
    );
    expect(text).toBe('<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST]');
  });

  it('builds and loads the qwen3 tokenizer variant, never emitting ids the tokenizer lacks', async () => {
    const dir = join(root, 'qwen3');
    // Qwen3's 151936-row vocabulary dominates the size; keep everything else minimal.
    await buildTinyModel({ out: dir, tokenizer: 'qwen3', layers: 2, hidden: 32, heads: 4, kvHeads: 2, ffn: 64 });
    const l = await load(dir);
    try {
      const chat = l.tokenizer.apply_chat_template([{ role: 'user', content: 'Hi there' }], {
        tokenize: false,
        add_generation_prompt: true,
      });
      expect(chat).toBe('<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n');
      for (const text of PROMPTS.slice(0, 3)) {
        const ids = encode(l, text);
        const [theirs] = await transformersGreedy(l, [ids], 12);
        const ours = await greedyCached(l.run, ids, 12);
        expect(theirs, text).toEqual(ours.tokens);
        expect(Math.max(...theirs!)).toBeLessThan(151669);
        expect(l.tokenizer.decode(theirs!).length).toBeGreaterThan(0);
      }
    } finally {
      await release(l);
    }
  });

  // The real-size preset, built once into the model cache (~2 GB; the first build takes a minute or so).
  // Kept short: two prompts, six tokens each, since a forward of the 0.5 B model is slow on a shared CPU.
  it('the qwen2.5-0.5b preset (tied embeddings, q/k/v biases) generates exactly our greedy tokens', async () => {
    const l = await load(await ensureTinyModel({ preset: 'qwen2.5-0.5b' }));
    try {
      expect(l.run.layers).toBe(24);
      for (const text of ['Hello world', 'def fibonacci(n):']) {
        const ids = encode(l, text);
        const [theirs] = await transformersGreedy(l, [ids], 6);
        const ours = await greedyCached(l.run, ids, 6);
        expect(theirs, text).toEqual(ours.tokens);
        expect(Math.max(...theirs!)).toBeLessThan(151669);
      }
    } finally {
      await release(l);
    }
  }, 600_000);
});
