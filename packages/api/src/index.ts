export { createApiServer, DEFAULT_MAX_BODY_BYTES, DEFAULT_PORT, UNMATCHED_ROUTE, type ApiServer, type ApiServerOptions } from './server';
export { DEFAULT_COMPLETION_MAX_TOKENS, resolveMaxTokens, type ServedModel } from './prompt';
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
