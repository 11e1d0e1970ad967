// Weight-only quantization of MatMul weights, for speculative decoding's drafts. A draft only proposes
// tokens that the target verifies, so coarser weights may lower its acceptance but never change the output;
// and on a CPU a small draft's forward is bound by reading its weights (mostly the vocab-wide lm_head), so
// reading a quarter or an eighth of the bytes is what makes a draft round cheap.
import type { FloatWeight, GraphBuilder } from './graph-builder';

/** onnxruntime's contrib operators. */
export const MS_DOMAIN = 'com.microsoft';

/**
 * Both are com.microsoft MatMulNBits: weights in blocks of INT_BLOCK along K, each block with one symmetric
 * scale, and activations quantized to int8 per block inside the op (accuracy_level 4: integer dot products).
 * int8 keeps the greedy choices of the float draft nearly always (0.958 of positions against the float
 * draft's 0.956 agreement with a 16-layer target); int4 reads half the bytes again and agrees far less.
 * (DynamicQuantizeMatMul, int8 per column with one activation scale per call, was faster at 40 rows but
 * slower at one, where a draft round is, and agreed less: 0.948.)
 */
export const QUANTIZATIONS = ['int8', 'int4'] as const;
export type Quantization = (typeof QUANTIZATIONS)[number];
const BITS: Record<Quantization, number> = { int8: 8, int4: 4 };

/** Weights per block along K sharing one scale (onnxruntime's MatMulNBits quantizer default). */
export const INT_BLOCK = 128;
/** int8 activations and integer dot products; level 0 (float) dequantizes the weights on every call, ~100× slower here. */
const ACCURACY_LEVEL = 4;

/** How the float weight is stored: [K, N] (a projection, lm_head) or [N, K] (a tied embedding read as lm_head). */
export type WeightLayout = 'kn' | 'nk';

/** One tensor of a float weight's quantized form; its bytes are computed from the float weight's. */
export interface QuantizedPart {
  readonly name: string;
  readonly dims: readonly number[];
  readonly dataType: 'uint8' | 'float32';
  readonly source: FloatWeight;
  readonly layout: WeightLayout;
  readonly quantization: Quantization;
  readonly tensor: 'values' | 'scales';
}

function kn(w: FloatWeight, layout: WeightLayout): [number, number] {
  const [a, b] = w.dims as [number, number];
  return layout === 'kn' ? [a, b] : [b, a];
}

/** x · w with w stored quantized; returns the float32 product ([..., N]). `n` names the nodes. */
export function quantizedMatMul(b: GraphBuilder, x: string, w: FloatWeight, layout: WeightLayout, q: Quantization, n: string): string {
  const [K, N] = kn(w, layout);
  const bits = BITS[q];
  const blocks = Math.ceil(K / INT_BLOCK);
  const part = (tensor: QuantizedPart['tensor'], dims: number[], dataType: QuantizedPart['dataType']): string =>
    b.weight({
      name: `${w.name}_${tensor === 'values' ? `Q${bits}` : 'scales'}`,
      dims,
      dataType,
      source: w,
      layout,
      quantization: q,
      tensor,
    });
  const values = part('values', [N, blocks, (INT_BLOCK * bits) / 8], 'uint8');
  const scales = part('scales', [N * blocks], 'float32');
  const attrs = { K, N, bits, block_size: INT_BLOCK, accuracy_level: ACCURACY_LEVEL };
  return b.op('MatMulNBits', [x, values, scales], n, attrs, MS_DOMAIN);
}

/**
 * Both tensors of a weight's quantized form, from its float values, in MatMulNBits' layout: values
 * [N, blocks, block·bits/8] bytes (two 4-bit values per byte, the lower index in the low nibble) and one
 * scale per block. With no zero-point input the zero point is 2^(bits-1), so w ≈ scale · (v - 2^(bits-1));
 * padding past K holds the zero point.
 */
export function quantize(
  floats: Float32Array,
  w: FloatWeight,
  layout: WeightLayout,
  q: Quantization,
): { values: Uint8Array; scales: Float32Array } {
  const [K, N] = kn(w, layout);
  const at = layout === 'kn' ? (k: number, c: number) => floats[k * N + c]! : (k: number, c: number) => floats[c * K + k]!;
  const bits = BITS[q];
  const zero = 1 << (bits - 1);
  const top = zero - 1; // symmetric: ±top steps
  const blocks = Math.ceil(K / INT_BLOCK);
  const blockBytes = (INT_BLOCK * bits) / 8;
  const values = new Uint8Array(N * blocks * blockBytes);
  const scales = new Float32Array(N * blocks);
  for (let c = 0; c < N; c++) {
    for (let blk = 0; blk < blocks; blk++) {
      const from = blk * INT_BLOCK;
      const to = Math.min(K, from + INT_BLOCK);
      let amax = 0;
      for (let k = from; k < to; k++) amax = Math.max(amax, Math.abs(at(k, c)));
      const scale = amax > 0 ? amax / top : 1;
      scales[c * blocks + blk] = scale;
      const base = (c * blocks + blk) * blockBytes;
      for (let i = 0; i < INT_BLOCK; i++) {
        const v = from + i < to ? zero + Math.max(-top, Math.min(top, Math.round(at(from + i, c) / scale))) : zero;
        if (bits === 8) values[base + i] = v;
        else values[base + (i >> 1)]! |= i & 1 ? v << 4 : v;
      }
    }
  }
  return { values, scales };
}
