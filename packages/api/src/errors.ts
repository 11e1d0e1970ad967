import { EngineError, type EngineErrorCode } from './deps';

/** The OpenAI error body: `{"error": {"message", "type", "param", "code"}}`. */
export interface ErrorBody {
  readonly error: {
    readonly message: string;
    readonly type: string;
    readonly param: string | null;
    readonly code: string | null;
  };
}

/** Seconds a client should wait after a 429 before retrying. */
export const RETRY_AFTER_SECONDS = 1;

/**
 * Every failure the API reports, one static constructor per failure class; `toApiError` maps anything
 * thrown to one of these, and the server writes it in one place.
 */
export class ApiError extends Error {
  private constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    readonly code: string | null,
    readonly param: string | null,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** 400: the request is malformed or has a bad value. */
  static invalid(message: string, param: string | null = null, code = 'invalid_value'): ApiError {
    return new ApiError(400, 'invalid_request_error', message, code, param);
  }

  static invalidJson(detail: string): ApiError {
    return new ApiError(
      400,
      'invalid_request_error',
      `We could not parse the JSON body of your request (${detail}). The body must be a JSON object.`,
      'invalid_json',
      null,
    );
  }

  /** 400: prompt plus max tokens does not fit the model. */
  static contextLength(message: string, param: string): ApiError {
    return new ApiError(400, 'invalid_request_error', message, 'context_length_exceeded', param);
  }

  static modelNotFound(model: string): ApiError {
    return new ApiError(404, 'invalid_request_error', `The model \`${model}\` does not exist.`, 'model_not_found', 'model');
  }

  static routeNotFound(method: string, path: string): ApiError {
    return new ApiError(404, 'invalid_request_error', `Invalid URL (${method} ${path})`, 'not_found', null);
  }

  static methodNotAllowed(method: string, path: string, allow: readonly string[]): ApiError {
    return new ApiError(
      405,
      'invalid_request_error',
      `Method ${method} is not allowed on ${path}; use ${allow.join(' or ')}.`,
      'method_not_allowed',
      null,
      { allow: allow.join(', ') },
    );
  }

  static bodyTooLarge(limitBytes: number): ApiError {
    return new ApiError(
      413,
      'invalid_request_error',
      `The request body is larger than the limit of ${limitBytes} bytes.`,
      'request_too_large',
      null,
    );
  }

  /** 401: no API key, or not one of the server's. The key itself is never echoed. */
  static unauthorized(presented: boolean): ApiError {
    const message = presented
      ? 'Incorrect API key provided.'
      : "You didn't provide an API key. Provide it in an Authorization header using Bearer auth (Authorization: Bearer YOUR_KEY) or in an x-api-key header.";
    return new ApiError(401, 'invalid_request_error', message, 'invalid_api_key', null, { 'www-authenticate': 'Bearer' });
  }

  /** 429: this key's request rate is over its limit; `retryAfterSeconds` is when its bucket holds a request again. */
  static rateLimited(ratePerSecond: number, retryAfterSeconds: number): ApiError {
    return new ApiError(
      429,
      'rate_limit_error',
      `Rate limit reached: ${ratePerSecond} requests per second for this API key. Retry after ${retryAfterSeconds} s.`,
      'rate_limit_exceeded',
      null,
      { 'retry-after': String(retryAfterSeconds) },
    );
  }

  /** 429: this key already has its most requests in flight. */
  static tooManyConcurrent(limit: number): ApiError {
    return new ApiError(
      429,
      'rate_limit_error',
      `Too many concurrent requests: at most ${limit} in flight per API key.`,
      'concurrency_limit_exceeded',
      null,
      { 'retry-after': String(RETRY_AFTER_SECONDS) },
    );
  }

  /** 400: a prompt longer than the character cap, refused before it is tokenized. */
  static promptTooLong(param: string, chars: number, limit: number): ApiError {
    return new ApiError(
      400,
      'invalid_request_error',
      `Invalid '${param}': string too long. Expected at most ${limit} characters, but got ${chars}.`,
      'string_above_max_length',
      param,
    );
  }

  /** 429: the server cannot take the request now; `retryAfterSeconds` when the refuser computed it (admission). */
  static queueFull(message: string, retryAfterSeconds = RETRY_AFTER_SECONDS): ApiError {
    return new ApiError(429, 'rate_limit_error', message, 'queue_full', null, {
      'retry-after': String(Math.max(1, Math.ceil(retryAfterSeconds))),
    });
  }

  static notReady(message: string): ApiError {
    return new ApiError(503, 'service_unavailable_error', message, 'not_ready', null);
  }

  /** 500: the message is generic on purpose; the cause goes to the log, not to the client. */
  static internal(): ApiError {
    return new ApiError(500, 'server_error', 'The server had an error while processing your request.', 'internal_error', null);
  }

  toBody(): ErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }

  /** The same failure in Anthropic's shape (`/v1/messages`): `{"type": "error", "error": {"type", "message"}}`. */
  toAnthropicBody(): AnthropicErrorBody {
    return {
      type: 'error',
      error: {
        type: ANTHROPIC_ERROR_TYPES[this.status] ?? (this.status >= 500 ? 'api_error' : 'invalid_request_error'),
        message: this.message,
      },
    };
  }
}

export interface AnthropicErrorBody {
  readonly type: 'error';
  readonly error: { readonly type: string; readonly message: string };
}

/** Anthropic's error types by HTTP status (others: invalid_request_error below 500, api_error above). */
const ANTHROPIC_ERROR_TYPES: Readonly<Record<number, string>> = {
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  500: 'api_error',
  503: 'overloaded_error',
};

/** Which API's error shape a route answers in. */
export type ErrorDialect = 'openai' | 'anthropic';

export function errorBody(e: ApiError, dialect: ErrorDialect): ErrorBody | AnthropicErrorBody {
  return dialect === 'anthropic' ? e.toAnthropicBody() : e.toBody();
}

const ENGINE_ERRORS: Readonly<Record<EngineErrorCode, (e: EngineError) => ApiError>> = {
  invalid_request: (e) => ApiError.invalid(e.message, e.param ?? null),
  context_length_exceeded: (e) => ApiError.contextLength(e.message, e.param ?? 'messages'),
  queue_full: (e) => ApiError.queueFull(e.message, e.retryAfterSeconds),
  not_ready: (e) => ApiError.notReady(e.message),
  internal: () => ApiError.internal(),
};

/** Maps anything thrown to the ApiError the client sees. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof EngineError) {
    // Guarded because the code crosses a process boundary in the cluster and may be one we do not know.
    const map = Object.hasOwn(ENGINE_ERRORS, err.code) ? ENGINE_ERRORS[err.code] : undefined;
    return map ? map(err) : ApiError.internal();
  }
  return ApiError.internal();
}
