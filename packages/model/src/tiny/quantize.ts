// Weight-only quantization of MatMul weights, for speculative decoding's drafts. A draft only proposes
// tokens that the target verifies, so coarser weights may lower its acceptance but never change the output;
// and on a CPU a small draft's forward is bound by reading its weights (mostly the vocab-wide lm_head), so
// reading a quarter or an eighth of the bytes is what makes a draft round cheap.
import type { FloatWeight, GraphBuilder } from './graph-builder';

/** onnxruntime's contrib operators. */
export const MS_DOMAIN = 'com.microsoft';

/**
 * int8: com.microsoft DynamicQuantizeMatMul, int8 weights with one symmetric scale per output column and the
 * activations quantized to uint8 per call: what onnxruntime fuses quantize_dynamic(per_channel=True)'s
 * DynamicQuantizeLinear → MatMulInteger → Cast → Mul into (written fused: its common-subexpression pass
 * merges the q/k/v projections' shared DynamicQuantizeLinear, and a shared one is no longer fused).
 * int4: com.microsoft MatMulNBits, symmetric 4-bit blocks along K, int8 activations (accuracy_level 4).
 */
export const QUANTIZATIONS = ['int8', 'int4'] as const;
export type Quantization = (typeof QUANTIZATIONS)[number];

/** How the float weight is stored: [K, N] (a projection, lm_head) or [N, K] (a tied embedding read as lm_head). */
export type WeightLayout = 'kn' | 'nk';

/** One tensor of a float weight's quantized form; its bytes are computed from the float weight's. */
export interface QuantizedPart {
  readonly name: string;
  readonly dims: readonly number[];
  readonly dataType: 'int8' | 'uint8' | 'float32';
  readonly source: FloatWeight;
  readonly layout: WeightLayout;
  readonly quantization: Quantization;
  readonly tensor: 'values' | 'scales';
}

/** int4: weights per block along K sharing one scale (onnxruntime's MatMul4BitsQuantizer default). */
export const INT4_BLOCK = 128;
/** MatMulNBits quantizes activations to int8 and uses integer dot products; level 0 dequantizes the weights every call (100× slower here). */
const INT4_ACCURACY_LEVEL = 4;

function kn(w: FloatWeight, layout: WeightLayout): [number, number] {
  const [a, b] = w.dims as [number, number];
  return layout === 'kn' ? [a, b] : [b, a];
}

/** x · w with w stored quantized; returns the float32 product ([..., N]). `n` names the nodes. */
export function quantizedMatMul(b: GraphBuilder, x: string, w: FloatWeight, layout: WeightLayout, q: Quantization, n: string): string {
  const [K, N] = kn(w, layout);
  const part = (tensor: QuantizedPart['tensor'], suffix: string, dims: number[], dataType: QuantizedPart['dataType']): string =>
    b.weight({ name: `${w.name}_${suffix}`, dims, dataType, source: w, layout, quantization: q, tensor });
  if (q === 'int8') {
    const values = part('values', 'quantized', [K, N], 'int8');
    const scales = part('scales', 'scale', [N], 'float32');
    return b.op('DynamicQuantizeMatMul', [x, values, scales], n, {}, MS_DOMAIN); // the weights' zero point is 0
  }
  const blocks = Math.ceil(K / INT4_BLOCK);
  const values = part('values', 'Q4', [N, blocks, INT4_BLOCK / 2], 'uint8');
  const scales = part('scales', 'scales', [N * blocks], 'float32');
  const attrs = { K, N, bits: 4, block_size: INT4_BLOCK, accuracy_level: INT4_ACCURACY_LEVEL };
  return b.op('MatMulNBits', [x, values, scales], n, attrs, MS_DOMAIN);
}

/** Both tensors of a weight's quantized form, from its float values. */
export function quantize(
  floats: Float32Array,
  w: FloatWeight,
  layout: WeightLayout,
  q: Quantization,
): { values: Uint8Array; scales: Float32Array } {
  const [K, N] = kn(w, layout);
  const at = layout === 'kn' ? (k: number, c: number) => floats[k * N + c]! : (k: number, c: number) => floats[c * K + k]!;
  if (q === 'int8') {
    // Symmetric per output column: w ≈ scale · v, v in [-127, 127].
    const values = new Int8Array(K * N);
    const scales = new Float32Array(N);
    for (let c = 0; c < N; c++) {
      let amax = 0;
      for (let k = 0; k < K; k++) amax = Math.max(amax, Math.abs(at(k, c)));
      const scale = amax > 0 ? amax / 127 : 1;
      scales[c] = scale;
      for (let k = 0; k < K; k++) values[k * N + c] = Math.round(at(k, c) / scale);
    }
    return { values: new Uint8Array(values.buffer), scales };
  }
  // MatMulNBits: [N, blocks, block/2] bytes, two 4-bit values per byte (the lower index in the low nibble);
  // with no zero-point input it is 8, so w ≈ scale · (v - 8), v in [1, 15]; padding past K is 8 (zero).
  const blocks = Math.ceil(K / INT4_BLOCK);
  const half = INT4_BLOCK / 2;
  const values = new Uint8Array(N * blocks * half);
  const scales = new Float32Array(N * blocks);
  for (let c = 0; c < N; c++) {
    for (let blk = 0; blk < blocks; blk++) {
      const from = blk * INT4_BLOCK;
      const to = Math.min(K, from + INT4_BLOCK);
      let amax = 0;
      for (let k = from; k < to; k++) amax = Math.max(amax, Math.abs(at(k, c)));
      const scale = amax > 0 ? amax / 7 : 1;
      scales[c * blocks + blk] = scale;
      const base = (c * blocks + blk) * half;
      for (let i = 0; i < INT4_BLOCK; i++) {
        const v = from + i < to ? Math.max(1, Math.min(15, Math.round(at(from + i, c) / scale) + 8)) : 8;
        values[base + (i >> 1)]! |= i & 1 ? v << 4 : v;
      }
    }
  }
  return { values, scales };
}
