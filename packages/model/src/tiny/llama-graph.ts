// The whole decoder graph with the Hugging Face Optimum / transformers.js I/O contract.
import onnxProto from 'onnx-proto';
import { attentionAllowed, rotaryCosSin } from './attention-inputs';
import { GraphBuilder } from './graph-builder';
import { init } from './init';
import { decoderLayer, rmsNorm } from './llama-layer';
import type { TinyShape } from './options';

const { DataType } = onnxProto.onnx.TensorProto;
/** Added to the logits of ids the tokenizer lacks: far below any real logit, finite so softmax stays NaN-free. */
const UNUSED_TOKEN_LOGIT = -1e4;

/** Symbolic dimension names, as Optimum exports them. */
export const DIM = {
  batch: 'batch_size',
  seq: 'sequence_length',
  past: 'past_sequence_length',
  total: 'total_sequence_length',
} as const;

export function buildLlamaGraph(s: TinyShape): GraphBuilder {
  const b = new GraphBuilder();
  const inputIds = b.input('input_ids', DataType.INT64, [DIM.batch, DIM.seq]);
  const attentionMask = b.input('attention_mask', DataType.INT64, [DIM.batch, DIM.total]);
  const positionIds = b.input('position_ids', DataType.INT64, [DIM.batch, DIM.seq]);
  const past = Array.from({ length: s.layers }, (_, i) => ({
    key: b.input(`past_key_values.${i}.key`, DataType.FLOAT, cacheDims(s, DIM.past)),
    value: b.input(`past_key_values.${i}.value`, DataType.FLOAT, cacheDims(s, DIM.past)),
  }));

  const allowed = attentionAllowed(b, inputIds, attentionMask);
  const { cos, sin } = rotaryCosSin(b, positionIds, s);
  const embed = b.weight({ name: 'model.embed_tokens.weight', dims: [s.vocab, s.hidden], ...init.embedding() });
  let hidden = b.op('Gather', [embed, inputIds], '/model/embed_tokens', { axis: 0 });
  const present: { key: string; value: string }[] = [];
  for (let i = 0; i < s.layers; i++) {
    const layer = decoderLayer(b, { hidden, allowed, cos, sin, pastKey: past[i]!.key, pastValue: past[i]!.value }, s, i);
    hidden = layer.hidden;
    present.push({ key: layer.presentKey, value: layer.presentValue });
  }
  // Only the last position's logits are ever used to pick the next token; computing the lm_head for
  // every prompt position would cost as much as all the layers together (like HF's logits_to_keep=1).
  const last = b.op('Slice', [hidden, b.constI64([-1]), b.constI64([Number.MAX_SAFE_INTEGER]), b.constI64([1])], '/model/last_position');
  const normed = rmsNorm(b, last, 'model.norm.weight', s, '/model/norm');
  const lmHead = b.weight({ name: 'lm_head.weight', dims: [s.hidden, s.vocab], ...init.lmHead(s) });
  let logits = b.op('MatMul', [normed, lmHead], '/lm_head');
  if (s.tokenCount < s.vocab) logits = b.op('Add', [logits, paddingBias(b, s)], '/lm_head');
  // Output order as Optimum: logits first, then present.{i}.key/value.
  b.output(logits, 'logits', DataType.FLOAT, [DIM.batch, 1, s.vocab]);
  present.forEach((p, i) => {
    b.output(p.key, `present.${i}.key`, DataType.FLOAT, cacheDims(s, DIM.total));
    b.output(p.value, `present.${i}.value`, DataType.FLOAT, cacheDims(s, DIM.total));
  });
  return b;
}

/** Trained models never emit embedding-padding ids; a random one would, and they cannot be detokenized. */
function paddingBias(b: GraphBuilder, s: TinyShape): string {
  const bias = Array.from({ length: s.vocab }, (_, v) => (v < s.tokenCount ? 0 : UNUSED_TOKEN_LOGIT));
  return b.constF32(bias);
}

function cacheDims(s: TinyShape, len: string): (string | number)[] {
  return [DIM.batch, s.kvHeads, len, s.headDim];
}
