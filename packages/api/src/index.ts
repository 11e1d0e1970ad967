export { createApiServer, DEFAULT_MAX_BODY_BYTES, DEFAULT_PORT, EDGE_DEFAULTS, UNMATCHED_ROUTE, type ApiServer, type ApiServerOptions, type EdgeOptions } from './server';
export { keysEqual, parseKeyFile } from './auth';
export type { ClientLimits } from './limits';
export { DEFAULT_COMPLETION_MAX_TOKENS, MAX_CHARS_PER_TOKEN, resolveMaxTokens, type ServedModel } from './prompt';
export { defaultToolCallParser, TOOL_CALL_PARSERS, type ToolCallParserName } from './tool-calls';
export { ApiError, toApiError, RETRY_AFTER_SECONDS, type ErrorBody } from './errors';
export { childLogger, createJsonLogger, createLogger, silentLogger, type JsonLoggerOptions, type LogFields, type Logger, type LogLevel } from './logger';
export {
  MAX_CHOICES,
  MAX_LOGPROBS,
  MAX_N,
  MAX_PROMPTS,
  MAX_STOP_STRINGS,
  parseChatRequest,
  parseCompletionRequest,
  type ChatRequest,
  type CompletionRequest,
  type SamplingOptions,
} from './requests';
