// Tensors every layer shares, computed once from the graph inputs: which key columns each query may see,
// and the rotary cos/sin for each token's position.
import onnxProto from 'onnx-proto';
import type { GraphBuilder } from './graph-builder';
import type { TinyShape } from './options';

const { DataType } = onnxProto.onnx.TensorProto;

/**
 * allowed[b, 0, s, j] (bool, [batch, 1, seq, total]): query s sits at absolute column past+s and may attend
 * to column j iff j <= past+s and attention_mask[b, j] is set.
 */
export function attentionAllowed(b: GraphBuilder, inputIds: string, attentionMask: string): string {
  const n = '/model/attn_mask';
  const seq = b.op('Shape', [inputIds], n, { start: 1, end: 2 });
  const total = b.op('Shape', [attentionMask], n, { start: 1, end: 2 });
  const past = b.op('Sub', [total, seq], n);
  const scalar = (v: string): string => b.op('Squeeze', [v, b.constI64([0])], n);
  const one = b.constI64([1], []);
  const keyCols = b.op('Range', [b.constI64([0], []), scalar(total), one], n); // [total]
  const queryCols = b.op('Range', [scalar(past), scalar(total), one], n); // [seq]
  const causal = b.op('LessOrEqual', [keyCols, b.op('Unsqueeze', [queryCols, b.constI64([1])], n)], n); // [seq, total]
  const padding = b.op('Cast', [attentionMask], n, { to: DataType.BOOL }); // [batch, total]
  const padding4 = b.op('Unsqueeze', [padding, b.constI64([1, 2])], n); // [batch, 1, 1, total]
  return b.op('And', [causal, padding4], n);
}

/** cos and sin, [batch, 1, seq, headDim], laid out for rotate_half (the two halves share frequencies). */
export function rotaryCosSin(b: GraphBuilder, positionIds: string, s: TinyShape): { cos: string; sin: string } {
  const n = '/model/rotary_emb';
  const half = s.headDim / 2;
  // Same formula as transformers' LlamaRotaryEmbedding: inv_freq[i] = 1 / theta^(2i / headDim), in float32.
  const invFreq = Array.from({ length: half }, (_, i) => 1 / Math.pow(s.ropeTheta, (2 * i) / s.headDim));
  const pos = b.op('Unsqueeze', [b.op('Cast', [positionIds], n, { to: DataType.FLOAT }), b.constI64([2])], n); // [batch, seq, 1]
  const freqs = b.op('Mul', [pos, b.constF32(invFreq)], n); // [batch, seq, half]
  const emb = b.op('Concat', [freqs, freqs], n, { axis: -1 });
  const heads = b.constI64([1]);
  return {
    cos: b.op('Unsqueeze', [b.op('Cos', [emb], n), heads], n),
    sin: b.op('Unsqueeze', [b.op('Sin', [emb], n), heads], n),
  };
}
