import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelSpec } from '../config';
import { ModelRunner } from '../runner';
import type { FloatWeight } from './graph-builder';
import { buildTinyModel, draftPair } from './index';
import { INT_BLOCK, quantize, type Quantization, type WeightLayout } from './quantize';

const { onnx } = onnxProto;
/** Small, but with an MLP width (72) that is no multiple of the block, so a block is padded. */
const SMALL = { layers: 2, hidden: 64, heads: 8, kvHeads: 2, ffn: 72 } as const;

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'pdserve-quantize-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function graphOf(dir: string): Promise<onnxProto.onnx.ModelProto> {
  return onnx.ModelProto.decode(await readFile(join(dir, 'onnx', 'model.onnx')));
}

/** MatMul nodes that read a stored weight (an initializer), as against activations (attention scores). */
function floatWeightMatMuls(m: onnxProto.onnx.ModelProto): string[] {
  const inits = new Set(m.graph!.initializer!.map((t) => t.name));
  return m.graph!.node!.filter((n) => ['MatMul', 'Gemm'].includes(n.opType!) && n.input!.some((i) => inits.has(i))).map((n) => n.name!);
}

describe('quantize: values and scales reproduce the float weight', () => {
  // Uneven K (not a multiple of the block), both layouts.
  const K = INT_BLOCK + 72;
  const N = 5;
  const floats = Float32Array.from({ length: K * N }, (_, i) => Math.sin(i * 0.37) * (1 + (i % 7)));
  const cases: [Quantization, WeightLayout][] = [
    ['int8', 'kn'],
    ['int8', 'nk'],
    ['int4', 'kn'],
    ['int4', 'nk'],
  ];
  for (const [q, layout] of cases) {
    it(`${q}, weight stored ${layout}: every value within half a step of the float`, () => {
      const w: FloatWeight = { name: 'w', dims: layout === 'kn' ? [K, N] : [N, K], mean: 0, std: 1 };
      const at = (k: number, c: number): number => (layout === 'kn' ? floats[k * N + c]! : floats[c * K + k]!);
      const { values, scales } = quantize(floats, w, layout, q);
      const bits = q === 'int8' ? 8 : 4;
      const blocks = Math.ceil(K / INT_BLOCK);
      expect(values).toHaveLength((N * blocks * INT_BLOCK * bits) / 8);
      for (let c = 0; c < N; c++) {
        for (let k = 0; k < K; k++) {
          const blk = Math.floor(k / INT_BLOCK);
          const i = k % INT_BLOCK;
          const base = (c * blocks + blk) * ((INT_BLOCK * bits) / 8);
          const scale = scales[c * blocks + blk]!;
          const v = bits === 8 ? values[base + i]! - 128 : (i & 1 ? values[base + (i >> 1)]! >> 4 : values[base + (i >> 1)]! & 15) - 8;
          expect(Math.abs(v * scale - at(k, c)), `[${k}, ${c}]`).toBeLessThanOrEqual(scale / 2 + 1e-6);
        }
      }
    });
  }
});

describe('a quantized draft', () => {
  const pair = (q?: Quantization) => draftPair(SMALL, 1, 0.1, q);
  let float: string;
  const dirs = {} as Record<Quantization | 'int8-layers', string>;
  beforeAll(async () => {
    float = join(root, 'float');
    await buildTinyModel({ out: float, ...pair().draft });
    for (const q of ['int8', 'int4'] as const) {
      dirs[q] = join(root, q);
      await buildTinyModel({ out: dirs[q], ...pair(q).draft });
    }
    dirs['int8-layers'] = join(root, 'int8-layers');
    await buildTinyModel({ out: dirs['int8-layers'], ...pair('int8').draft, quantizeLayers: true });
  });

  const ops = (m: onnxProto.onnx.ModelProto, opType: string): onnxProto.onnx.INodeProto[] =>
    m.graph!.node!.filter((n) => n.opType === opType);

  it('keeps the target float32: the pair differs only in its draft', () => {
    expect(pair('int8').target).toEqual(pair().target);
    expect(pair('int8').target).not.toHaveProperty('quantize');
  });

  for (const [q, bits] of [
    ['int8', 8],
    ['int4', 4],
  ] as const) {
    it(`${q}: lm_head is a com.microsoft MatMulNBits of ${bits} bits; the float draft has none`, async () => {
      const m = await graphOf(dirs[q]);
      const nbits = ops(m, 'MatMulNBits');
      expect(nbits.map((n) => n.input![1])).toEqual([`lm_head.weight_Q${bits}`]);
      expect(nbits[0]!.domain).toBe('com.microsoft');
      expect(Number(nbits[0]!.attribute!.find((a) => a.name === 'bits')!.i)).toBe(bits);
      expect(m.opsetImport!.map((o) => o.domain)).toContain('com.microsoft');
      expect(m.graph!.initializer!.some((t) => t.name === 'lm_head.weight')).toBe(false);
      // The draft's one layer: q, k, v, o, gate, up, down stay float.
      expect(floatWeightMatMuls(m)).toHaveLength(7);
    });
  }

  it('the float draft has no quantized op; with quantizeLayers every projection is quantized', async () => {
    const f = await graphOf(float);
    expect(ops(f, 'MatMulNBits')).toEqual([]);
    expect(f.opsetImport!.map((o) => o.domain)).toEqual(['']);
    expect(floatWeightMatMuls(f)).toHaveLength(7 + 1);
    const m = await graphOf(dirs['int8-layers']);
    expect(ops(m, 'MatMulNBits')).toHaveLength(7 + 1);
    expect(floatWeightMatMuls(m)).toEqual([]);
  });

  it('a tied lm_head (qwen2-style) reads an int8 copy of the embedding; the lookup keeps the float one', async () => {
    const tied = { ...SMALL, architecture: 'qwen2', tieEmbeddings: true, attentionBias: true } as const;
    const out = (name: string): string => join(root, name);
    await buildTinyModel({ out: out('tied'), ...tied });
    await buildTinyModel({ out: out('tied-int8'), ...tied, quantize: 'int8' });
    const m = await graphOf(out('tied-int8'));
    expect(ops(m, 'MatMulNBits').map((n) => n.input![1])).toEqual(['model.embed_tokens.weight_Q8']);
    expect(ops(m, 'Gather').some((n) => n.input![0] === 'model.embed_tokens.weight')).toBe(true);
    const argmaxes = async (dir: string): Promise<number[]> => {
      const r = await ModelRunner.create(loadModelSpec(dir));
      try {
        const rows = [{ tokenIds: [1, 450, 4996, 17354, 1701, 29916], pastLen: 0, numLogits: 6 }];
        const { logits } = await r.forward({ rows, pastWidth: 0 });
        const V = r.spec.vocabSize;
        return Array.from({ length: 6 }, (_, j) => {
          let best = 0;
          for (let v = 1; v < V; v++) if (logits[j * V + v]! > logits[j * V + best]!) best = v;
          return best;
        });
      } finally {
        await r.release();
      }
    };
    expect(await argmaxes(out('tied-int8'))).toEqual(await argmaxes(out('tied')));
  });

  it("loads as a model and its logits follow the float draft's (int8 closely, int4 loosely)", async () => {
    const rows = [{ tokenIds: [1, 450, 4996, 17354, 1701, 29916], pastLen: 0, numLogits: 6 }];
    const logits = async (dir: string): Promise<Float32Array> => {
      const r = await ModelRunner.create(loadModelSpec(dir));
      try {
        return (await r.forward({ rows, pastWidth: 0 })).logits;
      } finally {
        await r.release();
      }
    };
    const ref = await logits(float);
    // The largest logit error as a share of the logits' spread (their root mean square).
    const relError = (got: Float32Array): number => {
      const real = ref.filter((v) => v > -1000); // padding ids carry a constant -1e4
      const rms = Math.sqrt(real.reduce((a, v) => a + v * v, 0) / real.length);
      let worst = 0;
      for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(got[i]! - ref[i]!));
      return worst / rms;
    };
    const errors = Object.fromEntries(await Promise.all(Object.entries(dirs).map(async ([k, d]) => [k, relError(await logits(d))])));
    expect(errors['int8']).toBeGreaterThan(0); // quantized, not a copy of the float head
    expect(errors['int8']).toBeLessThan(0.05);
    expect(errors['int8-layers']).toBeLessThan(0.1);
    expect(errors['int4']).toBeLessThan(0.6);
  });
});
