import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';

/** Decoder-only architectures whose Optimum export follows the Llama I/O contract. */
export const SUPPORTED_MODEL_TYPES = ['llama', 'mistral', 'qwen2', 'qwen3'] as const;

/** What the runner and the engine need to know about a model, read from its files. */
export interface ModelSpec {
  readonly dir: string;
  /** Served model id: the directory name unless overridden. */
  readonly id: string;
  readonly modelType: string;
  readonly onnxPath: string;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly hiddenSize: number;
  readonly vocabSize: number;
  readonly maxPositionEmbeddings: number;
  readonly bosTokenId: number | undefined;
  readonly eosTokenIds: readonly number[];
}

/** A model directory that cannot be served; the message names the file or field. */
export class ModelLoadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelLoadError';
  }
}

type Json = Record<string, unknown>;

function readJson(dir: string, file: string, required: boolean): Json | undefined {
  const path = join(dir, file);
  if (!existsSync(path)) {
    if (required) throw new ModelLoadError(`${file} not found in ${dir}`);
    return undefined;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ModelLoadError(`${file} in ${dir} is not valid JSON (${(err as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ModelLoadError(`${file} in ${dir} must hold a JSON object`);
  }
  return parsed as Json;
}

function intField(cfg: Json, name: string, fallback?: number): number {
  const v = cfg[name];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new ModelLoadError(`config.json is missing the field ${name}`);
  }
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new ModelLoadError(`config.json field ${name} must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

function idList(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number');
  return [];
}

/** Finds the decoder graph: transformers.js layout (onnx/model.onnx) or a flat Optimum export. */
function findOnnx(dir: string): string {
  for (const rel of ['onnx/model.onnx', 'model.onnx', 'onnx/decoder_model_merged.onnx', 'decoder_model_merged.onnx']) {
    const p = join(dir, rel);
    if (existsSync(p)) return p;
  }
  throw new ModelLoadError(`onnx/model.onnx not found in ${dir}`);
}

/** Reads and validates a Hugging Face-layout model directory. Throws ModelLoadError naming the problem. */
export function loadModelSpec(dir: string, id?: string): ModelSpec {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ModelLoadError(`model directory ${dir} does not exist`);
  const cfg = readJson(dir, 'config.json', true)!;
  const gen = readJson(dir, 'generation_config.json', false) ?? {};
  if (!existsSync(join(dir, 'tokenizer.json'))) throw new ModelLoadError(`tokenizer.json not found in ${dir}`);
  readJson(dir, 'tokenizer_config.json', true);

  const modelType = cfg['model_type'];
  if (typeof modelType !== 'string') throw new ModelLoadError('config.json is missing the field model_type');
  if (!(SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType)) {
    throw new ModelLoadError(`unknown model_type "${modelType}" in config.json (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`);
  }
  const hiddenSize = intField(cfg, 'hidden_size');
  const numHeads = intField(cfg, 'num_attention_heads');
  const numKvHeads = intField(cfg, 'num_key_value_heads', numHeads);
  const headDim = intField(cfg, 'head_dim', Math.floor(hiddenSize / numHeads));
  if (numHeads % numKvHeads !== 0) {
    throw new ModelLoadError(`config.json: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  }
  const eos = [...new Set([...idList(gen['eos_token_id']), ...idList(cfg['eos_token_id'])])];
  const bos = idList(gen['bos_token_id'] ?? cfg['bos_token_id'])[0];
  return {
    dir,
    id: id ?? basename(dir),
    modelType,
    onnxPath: findOnnx(dir),
    numLayers: intField(cfg, 'num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    hiddenSize,
    vocabSize: intField(cfg, 'vocab_size'),
    maxPositionEmbeddings: intField(cfg, 'max_position_embeddings', 2048),
    bosTokenId: bos,
    eosTokenIds: eos,
  };
}

/** Bytes of K and V for one token across all layers (float32). */
export function kvBytesPerToken(spec: ModelSpec): number {
  return spec.numLayers * 2 * spec.numKvHeads * spec.headDim * 4;
}
