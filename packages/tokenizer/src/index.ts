export type { ChatMessage, ChatRenderOptions, ChatToolCall, DecodeOptions, EncodeOptions, TextTokenizer } from './types';
export { Tokenizer } from './tokenizer';
export { IncrementalDetokenizer } from './detokenizer';
export { StopMatcher } from './stop';
export { ChatTemplateError } from './chat';
