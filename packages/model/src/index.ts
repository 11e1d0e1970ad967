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
export { referenceGenerate, type ReferenceResult } from './reference';
export { Sampler, isStopToken } from './sampler';
export {
  defaultSamplingParams,
  samplingParams,
  type SampledToken,
  type SamplingParams,
  type StructuredOutput,
  type TokenLogprob,
} from './sampling';
export { buildTinyModel, draftPair, PRESETS, type PresetName, type TinyModelOptions } from './tiny/index';
export { REPO_ROOT, cacheDir, ensureTinyModel } from './tiny-cache';
export {
  boundsProblem,
  logitBiasProblem,
  MAX_LOGIT_BIAS,
  MAX_LOGPROBS,
  MAX_STOP_LENGTH,
  MAX_STOP_STRINGS,
  MAX_STOP_TOKEN_IDS,
  SAMPLING_BOUNDS,
  samplingProblem,
  stopProblem,
  stopTokenIdsProblem,
  type Bounds,
  type SamplingProblem,
} from './sampling-check';
