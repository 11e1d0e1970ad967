import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTinyModel, type TinyModelOptions } from './index';
import { buildLlamaGraph } from './llama-graph';
import { resolveShape } from './options';

const SMALL = { layers: 2, hidden: 64, heads: 8, kvHeads: 2, ffn: 128 } as const;

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'pdserve-tiny-build-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function build(name: string, opts: Omit<TinyModelOptions, 'out'>): Promise<string> {
  const out = join(root, name);
  await buildTinyModel({ out, ...opts });
  return out;
}

/** Relative path → bytes, for every file under dir. */
async function snapshot(dir: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) files.set(relative(dir, join(e.parentPath, e.name)), await readFile(join(e.parentPath, e.name)));
  }
  return files;
}

function expectSameFiles(a: Map<string, Buffer>, b: Map<string, Buffer>): void {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  for (const [path, bytes] of a) expect(bytes.equals(b.get(path)!), path).toBe(true);
}

describe('buildTinyModel small shape', () => {
  it('gives byte-identical files for the same seed and different weights for another seed (inline weights)', async () => {
    const a = await snapshot(await build('small-a', { ...SMALL, seed: 7 }));
    const b = await snapshot(await build('small-b', { ...SMALL, seed: 7 }));
    const c = await snapshot(await build('small-c', { ...SMALL, seed: 8 }));
    expect(a.has('onnx/model.onnx_data')).toBe(false);
    expectSameFiles(a, b);
    expect(a.get('onnx/model.onnx')!.equals(c.get('onnx/model.onnx')!)).toBe(false);
    expect(a.get('onnx/model.onnx')!.length).toBe(c.get('onnx/model.onnx')!.length);
  });
});

describe('buildTinyModel default shape', () => {
  let out: string;
  let elapsedMs: number;
  const calls: [number, number][] = [];
  beforeAll(async () => {
    out = join(root, 'default-a');
    const t0 = performance.now();
    await buildTinyModel({ out }, (done, total) => calls.push([done, total]));
    elapsedMs = performance.now() - t0;
  });

  it('builds in well under a minute, reporting progress up to the bytes written', async () => {
    expect(elapsedMs).toBeLessThan(60_000);
    const files = await snapshot(out);
    const written = [...files.values()].reduce((a, f) => a + f.length, 0);
    expect(calls.length).toBeGreaterThan(10);
    expect(calls[0]).toEqual([0, written]);
    expect(calls.at(-1)).toEqual([written, written]);
    for (let i = 1; i < calls.length; i++) expect(calls[i]![0]).toBeGreaterThanOrEqual(calls[i - 1]![0]);

    expect(files.get('onnx/model.onnx')!.length).toBeLessThan(1 << 20);
    expect(files.get('onnx/model.onnx_data')!.length).toBeGreaterThan(60e6);
    expect((await stat(join(out, 'tokenizer.json'))).size).toBeGreaterThan(1e6);
  });

  it('gives byte-identical files for the same seed and different weights for another seed (external data)', async () => {
    const a = await snapshot(out);
    const b = await snapshot(await build('default-b', { seed: 0 }));
    const c = await snapshot(await build('default-c', { seed: 1 }));
    expectSameFiles(a, b);
    // The graph is seed-independent; only the weights move.
    expect(a.get('onnx/model.onnx')!.equals(c.get('onnx/model.onnx')!)).toBe(true);
    expect(a.get('onnx/model.onnx_data')!.equals(c.get('onnx/model.onnx_data')!)).toBe(false);
  });

  it('writes a llama config.json, generation_config.json and a tokenizer_config.json with a chat template', async () => {
    const cfg = JSON.parse(await readFile(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(cfg).toMatchObject({
      model_type: 'llama',
      architectures: ['LlamaForCausalLM'],
      hidden_size: 256,
      intermediate_size: 688,
      num_attention_heads: 8,
      num_key_value_heads: 2,
      num_hidden_layers: 4,
      head_dim: 32,
      vocab_size: 32000,
      max_position_embeddings: 4096,
      rms_norm_eps: 1e-5,
      rope_theta: 10000,
      bos_token_id: 1,
      eos_token_id: 2,
      tie_word_embeddings: false,
      hidden_act: 'silu',
      torch_dtype: 'float32',
      'transformers.js_config': { dtype: 'fp32', use_external_data_format: true },
    });
    const gen = JSON.parse(await readFile(join(out, 'generation_config.json'), 'utf8')) as Record<string, unknown>;
    expect(gen).toEqual({ bos_token_id: 1, eos_token_id: 2 });
    const tokCfg = JSON.parse(await readFile(join(out, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    expect(tokCfg['chat_template']).toContain('[INST]');
    expect(tokCfg['chat_template']).toContain('<<SYS>>');
  });
});

describe('presets', () => {
  it("give real models' shapes, with explicit options overriding them", () => {
    const q = resolveShape({ out: '', preset: 'qwen2.5-0.5b' });
    expect(q).toMatchObject({
      architecture: 'qwen2',
      layers: 24,
      hidden: 896,
      heads: 14,
      kvHeads: 2,
      headDim: 64,
      ffn: 4864,
      vocab: 151936,
      tokenizer: 'qwen3',
      tieEmbeddings: true,
      attentionBias: true,
    });
    expect(parameterCount(q) / 1e9).toBeCloseTo(0.494, 3);
    const l = resolveShape({ out: '', preset: 'llama-1b' });
    expect(l).toMatchObject({
      architecture: 'llama',
      layers: 22,
      hidden: 2048,
      heads: 32,
      kvHeads: 4,
      headDim: 64,
      ffn: 5632,
      vocab: 32000,
      tieEmbeddings: false,
    });
    expect(parameterCount(l) / 1e9).toBeCloseTo(1.1, 1);
    expect(resolveShape({ out: '', preset: 'qwen2.5-0.5b', layers: 2, seed: 5 })).toMatchObject({ layers: 2, hidden: 896, seed: 5 });
    expect(() => resolveShape({ out: '', preset: 'gpt-5' as never })).toThrow(/unknown preset/);
  });

  it('a tied, biased qwen2 model writes no lm_head, q/k/v biases and a qwen2 config', async () => {
    const out = await build('qwen2-small', { ...SMALL, architecture: 'qwen2', tieEmbeddings: true, attentionBias: true });
    const cfg = JSON.parse(await readFile(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(cfg).toMatchObject({
      model_type: 'qwen2',
      architectures: ['Qwen2ForCausalLM'],
      tie_word_embeddings: true,
      attention_bias: true,
    });
    const names = buildLlamaGraph(
      resolveShape({ out, ...SMALL, architecture: 'qwen2', tieEmbeddings: true, attentionBias: true }),
    ).weights.map((w) => w.name);
    expect(names).not.toContain('lm_head.weight');
    expect(names).toContain('model.layers.1.self_attn.k_proj.bias');
    expect(names).not.toContain('model.layers.1.self_attn.o_proj.bias');
  });
});

/** Learned parameters of a shape (what a model card counts). */
function parameterCount(s: ReturnType<typeof resolveShape>): number {
  return buildLlamaGraph(s).weights.reduce((a, w) => a + w.dims.reduce((x, d) => x * d, 1), 0);
}

describe('buildTinyModel options', () => {
  it('rejects shapes the graph cannot express', async () => {
    await expect(buildTinyModel({ out: join(root, 'bad1'), hidden: 60, heads: 8 })).rejects.toThrow(/multiple of heads/);
    await expect(buildTinyModel({ out: join(root, 'bad2'), heads: 8, kvHeads: 3 })).rejects.toThrow(/multiple of kvHeads/);
    await expect(buildTinyModel({ out: join(root, 'bad3'), layers: 0 })).rejects.toThrow(/layers/);
  });

  it('removes a stale external data file when rebuilding inline into the same directory', async () => {
    const out = join(root, 'rebuilt');
    await buildTinyModel({ out, layers: 1 });
    expect((await snapshot(out)).has('onnx/model.onnx_data')).toBe(true);
    await buildTinyModel({ out, ...SMALL });
    const files = await snapshot(out);
    expect(files.has('onnx/model.onnx_data')).toBe(false);
    expect(JSON.parse(files.get('config.json')!.toString('utf8'))['transformers.js_config']).toEqual({ dtype: 'fp32' });
  });
});
