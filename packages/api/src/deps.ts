// The only file that reaches into sibling packages, through their index.ts faces.
export { EngineError } from '@pdserve/engine';
export type { EngineClient, EngineErrorCode, FinishReason, GenerateOutput, GenerateRequest, PromptLogprob } from '@pdserve/engine';
export type { Bounds, SamplingParams, SamplingProblem, StructuredOutput, TokenLogprob } from '@pdserve/model';
export { boundsProblem, logitBiasProblem, MAX_LOGPROBS, MAX_STOP_STRINGS, SAMPLING_BOUNDS, stopProblem, stopTokenIdsProblem } from '@pdserve/model';
export { GrammarError, grammarFor } from '@pdserve/grammar';
export { ChatTemplateError, IncrementalDetokenizer, StopMatcher } from '@pdserve/tokenizer';
export type { ChatMessage, ChatRenderOptions, ChatToolCall, DecodeOptions, EncodeOptions, TextTokenizer } from '@pdserve/tokenizer';
