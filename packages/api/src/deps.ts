// The only file that reaches into sibling packages, through their index.ts faces.
export { EngineError, SERVICE_TIERS } from '@pdserve/contracts';
export type {
  EngineClient,
  EngineErrorCode,
  FinishReason,
  GenerateOutput,
  GenerateRequest,
  PromptLogprob,
  ServiceTier,
} from '@pdserve/contracts';
export type { Bounds, SamplingParams, SamplingProblem, StructuredOutput, TokenLogprob } from '@pdserve/model/sampling';
export {
  boundsProblem,
  logitBiasProblem,
  MAX_LOGPROBS,
  MAX_STOP_STRINGS,
  SAMPLING_BOUNDS,
  stopProblem,
  stopTokenIdsProblem,
} from '@pdserve/model/sampling';
export { GrammarError, grammarFor } from '@pdserve/grammar';
export { ChatTemplateError, IncrementalDetokenizer, StopMatcher } from '@pdserve/tokenizer';
export { silentLogger } from '@pdserve/log';
export type { LogFields, Logger } from '@pdserve/contracts';
export type { ChatMessage, ChatRenderOptions, ChatToolCall, DecodeOptions, EncodeOptions, TextTokenizer } from '@pdserve/tokenizer';
