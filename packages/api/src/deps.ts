// The only file that reaches into sibling packages, through their index.ts faces.
export { EngineError } from '@pdserve/engine';
export type { EngineClient, EngineErrorCode, FinishReason, GenerateOutput, GenerateRequest } from '@pdserve/engine';
export type { SamplingParams, TokenLogprob } from '@pdserve/model';
export { ChatTemplateError, IncrementalDetokenizer, StopMatcher } from '@pdserve/tokenizer';
export type { ChatMessage, DecodeOptions, EncodeOptions, TextTokenizer } from '@pdserve/tokenizer';
