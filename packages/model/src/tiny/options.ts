import { QUANTIZATIONS, type Quantization } from './quantize';

/** Real models' shapes, with random weights: what the engine is measured at beyond the tiny default. */
export const PRESETS = {
  /** Qwen2.5-0.5B: 494 M parameters (~1.9 GiB at fp32), 24 KiB of KV per token. */
  'qwen2.5-0.5b': {
    architecture: 'qwen2',
    layers: 24,
    hidden: 896,
    heads: 14,
    kvHeads: 2,
    ffn: 4864,
    tokenizer: 'qwen3',
    tieEmbeddings: true,
    attentionBias: true,
    maxPositions: 32768,
    ropeTheta: 1_000_000,
    rmsNormEps: 1e-6,
  },
  /**
   * TinyLlama-1.1B's shape (a Llama-2 architecture with the Llama-2 tokenizer): 1.1 B parameters
   * (~4.1 GiB at fp32; 3.85 GiB of RSS once loaded), 44 KiB of KV per token: a 1 B Llama that leaves
   * most of a shared 24 GiB machine to a KV pool and to the others on it.
   */
  'llama-1b': {
    architecture: 'llama',
    layers: 22,
    hidden: 2048,
    heads: 32,
    kvHeads: 4,
    ffn: 5632,
    tokenizer: 'llama2',
    tieEmbeddings: false,
    attentionBias: false,
    maxPositions: 2048,
    ropeTheta: 10000,
    rmsNormEps: 1e-5,
  },
} as const satisfies Record<string, Omit<TinyModelOptions, 'out' | 'seed' | 'preset'>>;
export type PresetName = keyof typeof PRESETS;

/**
 * What to build; every field but `out` has a default that gives the ~70 MB built-in tiny model, or the
 * preset's value when a preset is named (fields given explicitly override it).
 */
export interface TinyModelOptions {
  /** Directory to write; created if missing, files in it are overwritten. */
  out: string;
  /** A real model's shape (see PRESETS). */
  preset?: PresetName;
  /** config.json's model_type: 'qwen2' is Llama with q/k/v biases and usually tied embeddings. Default 'llama'. */
  architecture?: 'llama' | 'qwen2';
  /** Weight seed: the same seed gives byte-identical files. Default 0. */
  seed?: number;
  /** Decoder layers. Default 4. */
  layers?: number;
  /** Hidden size (model width). Default 256. */
  hidden?: number;
  /** Query heads. Default 8. */
  heads?: number;
  /** Key/value heads (grouped-query attention); must divide `heads`. Default 2. */
  kvHeads?: number;
  /** MLP intermediate size. Default 688. */
  ffn?: number;
  /** Which real tokenizer to ship; also fixes the vocabulary size. Default 'llama2'. */
  tokenizer?: 'llama2' | 'qwen3';
  /** max_position_embeddings written to config.json (rotary is computed in-graph, so not a hard limit). Default 4096. */
  maxPositions?: number;
  /** Rotary base. Default 10000. */
  ropeTheta?: number;
  /** RMSNorm epsilon. Default 1e-5. */
  rmsNormEps?: number;
  /** lm_head shares the embedding matrix (no separate lm_head.weight). Default false. */
  tieEmbeddings?: boolean;
  /** q/k/v projections have biases, as Qwen2's. Default false. */
  attentionBias?: boolean;
  /**
   * Synthetic speculative-decoding pair (see draftPair): layers from this index on add their attention
   * and MLP outputs to the residual stream scaled by `residualScale`. Layers below it, the embeddings,
   * the final norm and the lm_head are exactly those of a model built with `layers: residualScaleFrom`
   * and the same seed and shape (weights are generated per tensor name), which is then a draft whose
   * agreement with this target is tuned by the scale: 0 = identical outputs, 1 = an ordinary model.
   * Default: no layer scaled.
   */
  residualScaleFrom?: number;
  /** Scale of the residual branches of layers ≥ residualScaleFrom; default 1. */
  residualScale?: number;
  /**
   * Store lm_head quantized (and with quantizeLayers the layers' projections; the embedding lookup stays
   * float32), for a speculative-decoding draft whose forward is bound by reading them (see quantize.ts).
   * Default: float32.
   */
  quantize?: Quantization;
  /**
   * Quantize the layers' projections too. Default false: a shallow draft's bytes are mostly its
   * vocab-wide lm_head, and quantizing its layers as well lowered its agreement with its target (0.935
   * against 0.948 of greedy positions, 1-layer int8 draft of a 16-layer target) for no measurable speed.
   */
  quantizeLayers?: boolean;
}

/** The model's shape with every default applied and checked. */
export interface TinyShape {
  readonly seed: number;
  readonly architecture: 'llama' | 'qwen2';
  readonly layers: number;
  readonly hidden: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly ffn: number;
  readonly vocab: number;
  /** Ids at or above this are embedding padding the tokenizer cannot decode. */
  readonly tokenCount: number;
  readonly tokenizer: 'llama2' | 'qwen3';
  readonly maxPositions: number;
  readonly ropeTheta: number;
  readonly rmsNormEps: number;
  readonly tieEmbeddings: boolean;
  readonly attentionBias: boolean;
  /** Layers from this index on have their residual branches scaled by residualScale (layers = none). */
  readonly residualScaleFrom: number;
  readonly residualScale: number;
  readonly quantize: Quantization | 'none';
  readonly quantizeLayers: boolean;
}

/** Vocabulary size per tokenizer: llama2's 32000; Qwen3's padded embedding size (its ids end at 151668). */
export const VOCAB_SIZE = { llama2: 32000, qwen3: 151936 } as const;
/** Token ids the tokenizer can produce or decode (highest id + 1); logits above are padding. */
export const TOKEN_COUNT = { llama2: 32000, qwen3: 151669 } as const;

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v <= 0) throw new RangeError(`tiny model: ${name} must be a positive integer, got ${v}`);
  return v;
}

/** Applies defaults and rejects shapes the graph cannot express. */
export function resolveShape(given: TinyModelOptions): TinyShape {
  if (given.preset !== undefined && !(given.preset in PRESETS)) {
    throw new RangeError(`tiny model: unknown preset ${String(given.preset)} (known: ${Object.keys(PRESETS).join(', ')})`);
  }
  const defined = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) as TinyModelOptions;
  const opts: TinyModelOptions = given.preset === undefined ? defined : { ...PRESETS[given.preset], ...defined };
  const seed = opts.seed ?? 0;
  const architecture = opts.architecture ?? 'llama';
  if (architecture !== 'llama' && architecture !== 'qwen2')
    throw new RangeError(`tiny model: unknown architecture ${String(architecture)}`);
  if (!Number.isInteger(seed)) throw new RangeError(`tiny model: seed must be an integer, got ${seed}`);
  const layers = positiveInt('layers', opts.layers ?? 4);
  const hidden = positiveInt('hidden', opts.hidden ?? 256);
  const heads = positiveInt('heads', opts.heads ?? 8);
  const kvHeads = positiveInt('kvHeads', opts.kvHeads ?? 2);
  const ffn = positiveInt('ffn', opts.ffn ?? 688);
  const maxPositions = positiveInt('maxPositions', opts.maxPositions ?? 4096);
  const tokenizer = opts.tokenizer ?? 'llama2';
  if (!(tokenizer in VOCAB_SIZE)) throw new RangeError(`tiny model: unknown tokenizer ${String(tokenizer)}`);
  if (hidden % heads !== 0) throw new RangeError(`tiny model: hidden (${hidden}) must be a multiple of heads (${heads})`);
  if (heads % kvHeads !== 0) throw new RangeError(`tiny model: heads (${heads}) must be a multiple of kvHeads (${kvHeads})`);
  const headDim = hidden / heads;
  // rotate_half splits each head in two halves.
  if (headDim % 2 !== 0) throw new RangeError(`tiny model: head dim (${headDim}) must be even`);
  const ropeTheta = opts.ropeTheta ?? 10000;
  const rmsNormEps = opts.rmsNormEps ?? 1e-5;
  if (!(ropeTheta > 0)) throw new RangeError(`tiny model: ropeTheta must be positive, got ${ropeTheta}`);
  if (!(rmsNormEps > 0)) throw new RangeError(`tiny model: rmsNormEps must be positive, got ${rmsNormEps}`);
  const residualScaleFrom = opts.residualScaleFrom ?? layers;
  const residualScale = opts.residualScale ?? 1;
  if (!Number.isInteger(residualScaleFrom) || residualScaleFrom < 0 || residualScaleFrom > layers) {
    throw new RangeError(`tiny model: residualScaleFrom must be an integer in [0, ${layers}], got ${residualScaleFrom}`);
  }
  if (!(residualScale >= 0 && Number.isFinite(residualScale)))
    throw new RangeError(`tiny model: residualScale must be ≥ 0, got ${residualScale}`);
  const quantize = opts.quantize ?? 'none';
  if (quantize !== 'none' && !QUANTIZATIONS.includes(quantize))
    throw new RangeError(`tiny model: unknown quantization ${String(quantize)} (known: ${QUANTIZATIONS.join(', ')})`);
  return {
    seed,
    architecture,
    layers,
    hidden,
    heads,
    kvHeads,
    headDim,
    ffn,
    vocab: VOCAB_SIZE[tokenizer],
    tokenCount: TOKEN_COUNT[tokenizer],
    tokenizer,
    maxPositions,
    ropeTheta,
    rmsNormEps,
    tieEmbeddings: opts.tieEmbeddings ?? false,
    attentionBias: opts.attentionBias ?? false,
    residualScaleFrom,
    residualScale,
    quantize,
    quantizeLayers: quantize !== 'none' && (opts.quantizeLayers ?? false),
  };
}

/**
 * A synthetic target/draft pair whose agreement is tunable (for speculative decoding): the draft is the
 * target's first `draftLayers` layers with the target's embeddings, final norm and lm_head (the same
 * seed generates the same tensors); the target's further layers add `residualScale` × their usual
 * contribution. Scale 0 makes the target's outputs the draft's; larger scales make them agree less. Random
 * weights: the pair measures speculation's machinery, not any real model's acceptance rate. `draftQuantize`
 * stores the draft's weights quantized (the target stays float32: it is the reference).
 */
export function draftPair(
  target: Omit<TinyModelOptions, 'out'>,
  draftLayers: number,
  residualScale: number,
  draftQuantize?: Quantization,
): { target: Omit<TinyModelOptions, 'out'>; draft: Omit<TinyModelOptions, 'out'> } {
  const layers = target.layers ?? (target.preset ? PRESETS[target.preset].layers : 4);
  if (!Number.isInteger(draftLayers) || draftLayers < 1 || draftLayers >= layers) {
    throw new RangeError(`tiny model: draft layers must be an integer in [1, ${layers - 1}], got ${draftLayers}`);
  }
  return {
    target: { ...target, layers, residualScaleFrom: draftLayers, residualScale },
    draft: { ...target, layers: draftLayers, ...(draftQuantize ? { quantize: draftQuantize } : {}) },
  };
}
