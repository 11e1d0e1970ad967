// config.json and generation_config.json in the Hugging Face layout, with what transformers.js reads.
import type { TinyShape } from './options';
import type { TokenizerFiles } from './tokenizer-files';

export function configJson(s: TinyShape, tok: TokenizerFiles, externalData: boolean): Record<string, unknown> {
  const qwen2 = s.architecture === 'qwen2';
  return {
    architectures: [qwen2 ? 'Qwen2ForCausalLM' : 'LlamaForCausalLM'],
    model_type: s.architecture,
    attention_bias: s.attentionBias,
    attention_dropout: 0.0,
    bos_token_id: tok.bosTokenId,
    eos_token_id: tok.eosTokenIds[0],
    ...(tok.padTokenId === undefined ? {} : { pad_token_id: tok.padTokenId }),
    head_dim: s.headDim,
    hidden_act: 'silu',
    hidden_size: s.hidden,
    initializer_range: 0.02,
    intermediate_size: s.ffn,
    max_position_embeddings: s.maxPositions,
    mlp_bias: false,
    num_attention_heads: s.heads,
    num_hidden_layers: s.layers,
    num_key_value_heads: s.kvHeads,
    pretraining_tp: 1,
    rms_norm_eps: s.rmsNormEps,
    rope_scaling: null,
    rope_theta: s.ropeTheta,
    tie_word_embeddings: s.tieEmbeddings,
    torch_dtype: 'float32',
    use_cache: true,
    vocab_size: s.vocab,
    ...(qwen2 ? { use_sliding_window: false, sliding_window: s.maxPositions, max_window_layers: s.layers } : {}),
    // transformers.js: load onnx/model.onnx (fp32, no suffix) by default, and fetch the external data file with it.
    'transformers.js_config': { dtype: 'fp32', ...(externalData ? { use_external_data_format: true } : {}) },
    pdserve_tiny: {
      seed: s.seed,
      tokenizer: s.tokenizer,
      ...(s.residualScaleFrom < s.layers
        ? { residual_scale_from: s.residualScaleFrom, residual_scale: s.residualScale, synthetic: 'speculative-decoding target' }
        : {}),
      ...(s.quantize === 'none' ? {} : { quantize: s.quantize, quantize_layers: s.quantizeLayers }),
    },
  };
}

export function generationConfigJson(tok: TokenizerFiles): Record<string, unknown> {
  return {
    bos_token_id: tok.bosTokenId,
    eos_token_id: tok.eosTokenIds.length === 1 ? tok.eosTokenIds[0] : [...tok.eosTokenIds],
    ...(tok.padTokenId === undefined ? {} : { pad_token_id: tok.padTokenId }),
  };
}
