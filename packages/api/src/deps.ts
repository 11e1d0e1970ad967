// The only file that reaches into sibling packages, through their index.ts faces.
export { EngineError, SERVICE_TIERS } from '@pdserve/engine';
export type { EngineClient, EngineErrorCode, FinishReason, GenerateOutput, GenerateRequest, ServiceTier } from '@pdserve/engine';
export type { Bounds, SamplingParams, SamplingProblem, TokenLogprob } from '@pdserve/model';
export { boundsProblem, MAX_LOGPROBS, MAX_STOP_STRINGS, SAMPLING_BOUNDS, stopProblem, stopTokenIdsProblem } from '@pdserve/model';
export { ChatTemplateError, IncrementalDetokenizer, StopMatcher } from '@pdserve/tokenizer';
export type { ChatMessage, DecodeOptions, EncodeOptions, TextTokenizer } from '@pdserve/tokenizer';
