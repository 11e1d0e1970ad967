export { loadModelSpec, kvBytesPerToken, ModelLoadError, SUPPORTED_MODEL_TYPES, type ModelSpec } from './config';
export {
  ModelRunner,
  type ForwardBatch,
  type ForwardResult,
  type ForwardRow,
  type LayerKv,
  type RunnerOptions,
} from './runner';
export { checkDraftCompatible } from './draft';
export { HUGE_PAGES_TUNABLE, hugePagesMissing, transparentHugePages, withHugePages } from './huge-pages';
export { referenceGenerate, type ReferenceResult } from './reference';
export { Sampler, isStopToken } from './sampler';
// The sampling values and checks, as the `@pdserve/model/sampling` subpath gives them to the edge.
export * from './sampling-api';
export { buildTinyModel, draftPair, PRESETS, QUANTIZATIONS, type PresetName, type Quantization, type TinyModelOptions } from './tiny/index';
export { REPO_ROOT, cacheDir, ensureTinyModel } from './tiny-cache';
