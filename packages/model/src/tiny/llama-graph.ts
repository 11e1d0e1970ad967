// The whole decoder graph with the Hugging Face Optimum / transformers.js I/O contract.
import onnxProto from 'onnx-proto';
import { attentionAllowed, rotaryCosSin } from './attention-inputs';
import { GraphBuilder } from './graph-builder';
import { init } from './init';
import { LOGITS_ARGMAX, NEW_KV_PREFIX } from '../runner';
import { decoderLayer, matMul, rmsNorm, type LayerOut } from './llama-layer';
import type { TinyShape } from './options';
import { quantizedMatMul } from './quantize';

const { DataType } = onnxProto.onnx.TensorProto;
/** Added to the logits of ids the tokenizer lacks: far below any real logit, finite so softmax stays NaN-free. */
const UNUSED_TOKEN_LOGIT = -1e4;

/** Symbolic dimension names, as Optimum exports them. */
export const DIM = {
  batch: 'batch_size',
  seq: 'sequence_length',
  past: 'past_sequence_length',
  total: 'total_sequence_length',
  logits: 'num_logits',
} as const;

export function buildLlamaGraph(s: TinyShape): GraphBuilder {
  const b = new GraphBuilder();
  const inputIds = b.input('input_ids', DataType.INT64, [DIM.batch, DIM.seq]);
  const attentionMask = b.input('attention_mask', DataType.INT64, [DIM.batch, DIM.total]);
  const positionIds = b.input('position_ids', DataType.INT64, [DIM.batch, DIM.seq]);
  // As transformers' logits_to_keep (and transformers.js's input of this name): the last N positions, 0 = all.
  const logitsToKeep = b.input('num_logits_to_keep', DataType.INT64, []);
  const past = Array.from({ length: s.layers }, (_, i) => ({
    key: b.input(`past_key_values.${i}.key`, DataType.FLOAT, cacheDims(s, DIM.past)),
    value: b.input(`past_key_values.${i}.value`, DataType.FLOAT, cacheDims(s, DIM.past)),
  }));

  const allowed = attentionAllowed(b, inputIds, attentionMask);
  const { cos, sin } = rotaryCosSin(b, positionIds, s);
  const embedWeight = { name: 'model.embed_tokens.weight', dims: [s.vocab, s.hidden], ...init.embedding() };
  const embed = b.weight(embedWeight);
  let hidden = b.op('Gather', [embed, inputIds], '/model/embed_tokens', { axis: 0 });
  const layers: LayerOut[] = [];
  for (let i = 0; i < s.layers; i++) {
    const layer = decoderLayer(b, { hidden, allowed, cos, sin, pastKey: past[i]!.key, pastValue: past[i]!.value }, s, i);
    hidden = layer.hidden;
    layers.push(layer);
  }
  // Only the positions whose next token is wanted (the last one; K+1 when verifying K draft tokens) go
  // through the lm_head: computing it for every prompt position would cost as much as all the layers.
  const n = '/model/logits_to_keep';
  const start = b.op('Neg', [b.op('Unsqueeze', [logitsToKeep, b.constI64([0])], n)], n); // -N, or 0 (all) for N = 0
  const kept = b.op('Slice', [hidden, start, b.constI64([Number.MAX_SAFE_INTEGER]), b.constI64([1])], n);
  const normed = rmsNorm(b, kept, 'model.norm.weight', s, '/model/norm', init.finalNorm(s));
  let logits: string;
  if (!s.tieEmbeddings)
    logits = matMul(b, normed, { name: 'lm_head.weight', dims: [s.hidden, s.vocab], ...init.lmHead(s) }, s.quantize, '/lm_head');
  else if (s.quantize === 'none') logits = tiedLmHead(b, normed, embed, s);
  // The lookup keeps the float embedding; the head reads a quantized copy of it.
  else logits = quantizedMatMul(b, normed, embedWeight, 'nk', s.quantize, '/lm_head');
  if (s.tokenCount < s.vocab) logits = b.op('Add', [logits, paddingBias(b, s)], '/lm_head');
  // Logits first, as Optimum; then, beyond its contract, each layer's new KV alone (what an engine that
  // keeps its own cache fetches: present is past ++ new, and fetching it would copy the whole past out of
  // onnxruntime every step) and the logits' argmax; then present.{i}.key/value, as Optimum.
  b.output(logits, 'logits', DataType.FLOAT, [DIM.batch, DIM.logits, s.vocab]);
  layers.forEach((l, i) => {
    b.output(l.newKey, `${NEW_KV_PREFIX}.${i}.key`, DataType.FLOAT, cacheDims(s, DIM.seq));
    b.output(l.newValue, `${NEW_KV_PREFIX}.${i}.value`, DataType.FLOAT, cacheDims(s, DIM.seq));
  });
  // Each logits row's argmax (the first of equal maxima), for a caller that samples greedily and needs no more.
  b.output(b.op('ArgMax', [logits], '/lm_head', { axis: 2, keepdims: 0 }), LOGITS_ARGMAX, DataType.INT64, [DIM.batch, DIM.logits]);
  layers.forEach((l, i) => {
    b.output(l.presentKey, `present.${i}.key`, DataType.FLOAT, cacheDims(s, DIM.total));
    b.output(l.presentValue, `present.${i}.value`, DataType.FLOAT, cacheDims(s, DIM.total));
  });
  return b;
}

/**
 * hidden · embedᵀ without a transposed copy of the embedding: Gemm reads it transposed in place (a
 * MatMul over Transpose(embed) would be constant-folded into a second vocab × hidden matrix).
 */
function tiedLmHead(b: GraphBuilder, x: string, embed: string, s: TinyShape): string {
  const n = '/lm_head';
  const rows = b.op('Reshape', [x, b.constI64([-1, s.hidden])], n);
  const logits = b.op('Gemm', [rows, embed], n, { transB: 1 });
  const shape = b.op('Concat', [b.op('Shape', [x], n, { start: 0, end: 2 }), b.constI64([s.vocab])], n, { axis: 0 });
  return b.op('Reshape', [logits, shape], n);
}

/** Trained models never emit embedding-padding ids; a random one would, and they cannot be detokenized. */
function paddingBias(b: GraphBuilder, s: TinyShape): string {
  const bias = Array.from({ length: s.vocab }, (_, v) => (v < s.tokenCount ? 0 : UNUSED_TOKEN_LOGIT));
  return b.constF32(bias);
}

function cacheDims(s: TinyShape, len: string): (string | number)[] {
  return [DIM.batch, s.kvHeads, len, s.headDim];
}
