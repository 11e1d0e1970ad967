// One Llama decoder layer, written with standard ONNX ops only (opset 17): RMSNorm, grouped-query
// self-attention with rotary embeddings and a KV cache (q/k/v biases for Qwen2), SwiGLU MLP. Weights are stored pre-transposed
// ([in, out]) so each projection is a single MatMul (onnxruntime's quantized one for a quantized draft, see quantize.ts).
import type { FloatWeight, GraphBuilder } from './graph-builder';
import { init, QK_GAIN, type InitScale } from './init';
import type { TinyShape } from './options';
import { quantizedMatMul, type Quantization } from './quantize';

/** Masked attention scores are replaced by this (float32 lowest, as transformers does); a row with no
 * visible column becomes uniform rather than NaN. */
const MASKED_SCORE = -3.4028234663852886e38;

export interface LayerIo {
  readonly hidden: string;
  /** Shared per-graph tensors, see attention-inputs.ts. */
  readonly allowed: string;
  readonly cos: string;
  readonly sin: string;
  readonly pastKey: string;
  readonly pastValue: string;
}

export interface LayerOut {
  readonly hidden: string;
  readonly presentKey: string;
  readonly presentValue: string;
  /** This forward's own keys (rotated) and values, [batch, kvHeads, seq, headDim]: the right end of present. */
  readonly newKey: string;
  readonly newValue: string;
}

export function rmsNorm(b: GraphBuilder, x: string, weightName: string, s: TinyShape, n: string, scale: InitScale = init.norm()): string {
  const w = b.weight({ name: weightName, dims: [s.hidden], ...scale });
  const meanSquare = b.op('ReduceMean', [b.op('Mul', [x, x], n)], n, { axes: [-1], keepdims: 1 });
  const inv = b.op('Reciprocal', [b.op('Sqrt', [b.op('Add', [meanSquare, b.constF32([s.rmsNormEps], [])], n)], n)], n);
  return b.op('Mul', [b.op('Mul', [x, inv], n), w], n);
}

/** x · w for a weight stored [in, out]: a MatMul, or its quantized form. */
export function matMul(b: GraphBuilder, x: string, w: FloatWeight, q: Quantization | 'none', n: string): string {
  return q === 'none' ? b.op('MatMul', [x, b.weight(w)], n) : quantizedMatMul(b, x, w, 'kn', q, n);
}

function linear(b: GraphBuilder, x: string, s: TinyShape, name: string, fanIn: number, fanOut: number, gain = 1, bias = false): string {
  const n = `/${name.replaceAll('.', '/')}`;
  const w = { name: `${name}.weight`, dims: [fanIn, fanOut], ...init.linear(fanIn, gain) };
  const y = matMul(b, x, w, s.quantizeLayers ? s.quantize : 'none', n);
  return bias ? b.op('Add', [y, b.weight({ name: `${name}.bias`, dims: [fanOut], ...init.bias() })], n) : y;
}

/** [batch, seq, heads*headDim] → [batch, heads, seq, headDim] */
function splitHeads(b: GraphBuilder, x: string, heads: number, headDim: number, n: string): string {
  const r = b.op('Reshape', [x, b.constI64([0, 0, heads, headDim])], n);
  return b.op('Transpose', [r], n, { perm: [0, 2, 1, 3] });
}

/** x·cos + rotate_half(x)·sin, where rotate_half([x1, x2]) = [-x2, x1] over the last axis. */
function applyRotary(b: GraphBuilder, x: string, io: LayerIo, s: TinyShape, n: string): string {
  const half = s.headDim / 2;
  const [x1, x2] = b.opN('Split', [x, b.constI64([half, half])], n, 2, { axis: -1 }) as [string, string];
  const rotated = b.op('Concat', [b.op('Neg', [x2], n), x1], n, { axis: -1 });
  return b.op('Add', [b.op('Mul', [x, io.cos], n), b.op('Mul', [rotated, io.sin], n)], n);
}

/**
 * Grouped-query attention without materialising repeated KV heads: query head h uses KV head h / groups
 * (transformers' repeat_kv order), so queries are regrouped as [batch, kvHeads, groups*seq, headDim] and
 * multiplied against the un-repeated cache directly. The past is read where it lies: scores against the past
 * and against the new keys are computed apart and concatenated (a few columns per query), and the context is
 * the sum of the two products with the values, so no step copies the whole past K and V
 * concatenated with the new ones; `present`, for callers that fetch it, is that concatenation. At the preset,
 * batch 32, a decode step over a 2,300-column past took 484–572 ms against 637–671 with the concatenated
 * attention, and onnxruntime's first run at a new, larger past no longer took seconds.
 */
function selfAttention(
  b: GraphBuilder,
  x: string,
  io: LayerIo,
  s: TinyShape,
  prefix: string,
): { out: string; key: string; value: string; newKey: string; newValue: string } {
  const n = `/${prefix.replaceAll('.', '/')}/self_attn`;
  const bias = s.attentionBias;
  const q = splitHeads(
    b,
    linear(b, x, s, `${prefix}.self_attn.q_proj`, s.hidden, s.heads * s.headDim, QK_GAIN, bias),
    s.heads,
    s.headDim,
    n,
  );
  const k = splitHeads(
    b,
    linear(b, x, s, `${prefix}.self_attn.k_proj`, s.hidden, s.kvHeads * s.headDim, QK_GAIN, bias),
    s.kvHeads,
    s.headDim,
    n,
  );
  const v = splitHeads(b, linear(b, x, s, `${prefix}.self_attn.v_proj`, s.hidden, s.kvHeads * s.headDim, 1, bias), s.kvHeads, s.headDim, n);
  const qScaled = b.op('Mul', [applyRotary(b, q, io, s, n), b.constF32([1 / Math.sqrt(s.headDim)], [])], n);
  const newKey = applyRotary(b, k, io, s, n);
  const key = b.op('Concat', [io.pastKey, newKey], n, { axis: 2 }); // [batch, kvHeads, total, headDim]
  const value = b.op('Concat', [io.pastValue, v], n, { axis: 2 });

  const qGrouped = b.op('Reshape', [qScaled, b.constI64([0, s.kvHeads, -1, s.headDim])], n);
  const tr = (x: string): string => b.op('Transpose', [x], n, { perm: [0, 1, 3, 2] });
  const scores = b.op('Concat', [b.op('MatMul', [qGrouped, tr(io.pastKey)], n), b.op('MatMul', [qGrouped, tr(newKey)], n)], n, {
    axis: -1,
  });
  const perHead = b.op('Reshape', [scores, b.constI64([0, s.heads, -1, 0])], n); // [batch, heads, seq, total]
  const masked = b.op('Where', [io.allowed, perHead, b.constF32([MASKED_SCORE], [])], n);
  const probs = b.op('Reshape', [b.op('Softmax', [masked], n, { axis: -1 }), b.constI64([0, s.kvHeads, -1, 0])], n);
  const width = b.op('Shape', [io.pastKey], n, { start: 2, end: 3 });
  const axis = b.constI64([3]);
  const probsPast = b.op('Slice', [probs, b.constI64([0]), width, axis], n);
  const probsNew = b.op('Slice', [probs, width, b.constI64([Number.MAX_SAFE_INTEGER]), axis], n);
  const summed = b.op('Add', [b.op('MatMul', [probsPast, io.pastValue], n), b.op('MatMul', [probsNew, v], n)], n);
  const context = b.op('Reshape', [summed, b.constI64([0, s.heads, -1, s.headDim])], n);
  const merged = b.op('Reshape', [b.op('Transpose', [context], n, { perm: [0, 2, 1, 3] }), b.constI64([0, 0, s.heads * s.headDim])], n);
  return { out: linear(b, merged, s, `${prefix}.self_attn.o_proj`, s.heads * s.headDim, s.hidden), key, value, newKey, newValue: v };
}

function mlp(b: GraphBuilder, x: string, s: TinyShape, prefix: string): string {
  const n = `/${prefix.replaceAll('.', '/')}/mlp`;
  const gate = linear(b, x, s, `${prefix}.mlp.gate_proj`, s.hidden, s.ffn);
  const up = linear(b, x, s, `${prefix}.mlp.up_proj`, s.hidden, s.ffn);
  const silu = b.op('Mul', [gate, b.op('Sigmoid', [gate], n)], n);
  return linear(b, b.op('Mul', [silu, up], n), s, `${prefix}.mlp.down_proj`, s.ffn, s.hidden);
}

export function decoderLayer(b: GraphBuilder, io: LayerIo, s: TinyShape, index: number): LayerOut {
  const prefix = `model.layers.${index}`;
  const n = `/${prefix.replaceAll('.', '/')}`;
  const attnIn = rmsNorm(b, io.hidden, `${prefix}.input_layernorm.weight`, s, `${n}/input_layernorm`);
  const attn = selfAttention(b, attnIn, io, s, prefix);
  // A synthetic draft pair's target scales the branches of the layers its draft lacks (see residualScaleFrom).
  const scaled = index >= s.residualScaleFrom && s.residualScale !== 1;
  const branch = (x: string): string => (scaled ? b.op('Mul', [x, b.constF32([s.residualScale], [])], n) : x);
  const mid = b.op('Add', [io.hidden, branch(attn.out)], n);
  const mlpIn = rmsNorm(b, mid, `${prefix}.post_attention_layernorm.weight`, s, `${n}/post_attention_layernorm`);
  const hidden = b.op('Add', [mid, branch(mlp(b, mlpIn, s, prefix))], n);
  return { hidden, presentKey: attn.key, presentValue: attn.value, newKey: attn.newKey, newValue: attn.newValue };
}
