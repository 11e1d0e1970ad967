// `@pdserve/model/sampling`: sampling values and their checks, without the model runner (and so without
// onnxruntime-node), for the HTTP edge and the gateway.
export {
  defaultSamplingParams,
  samplingParams,
  type SampledToken,
  type SamplingParams,
  type StructuredOutput,
  type TokenLogprob,
} from './sampling';
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
