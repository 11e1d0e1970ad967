import { randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApiKeys, presentedKey, type KeyId } from './auth';
import { countMessageTokens, parseMessagesRequest, serveMessages } from './anthropic';
import { serveChat } from './chat';
import { serveCompletion } from './completions';
import { ApiError, toApiError } from './errors';
import { readJsonBody, sendError, sendErrorLingering, sendJson } from './http';
import { ClientLimiter, type ClientLimits } from './limits';
import { silentLogger, type Logger } from './deps';
import type { ServedModel } from './prompt';
import type { ToolCallParserName } from './tool-calls';
import { parseChatRequest, parseCompletionRequest } from './requests';
import { detokenize, parseDetokenizeRequest, parseTokenizeRequest, tokenize } from './tokenize';
import { PDSERVE_VERSION } from './version';
import type { RequestContext } from './serve';

export interface ApiServerOptions {
  readonly models: readonly ServedModel[];
  /** Interface to listen on; default 127.0.0.1. */
  readonly host?: string;
  /** Default 8000 (vLLM's); 0 picks a free port. */
  readonly port?: number;
  /** Largest accepted request body, in bytes; default 4 MiB. Larger ones get 413. */
  readonly maxBodyBytes?: number;
  readonly logger?: Logger;
  /** Whether the server starts ready (see setReady); default true. */
  readonly ready?: boolean;
  /** On close, how long in-flight requests may finish before their connections are cut, in ms; default 5000. */
  readonly shutdownGraceMs?: number;
  /**
   * Told when each request's response closes (for metrics): the route template it matched (`/v1/models/{model}`;
   * UNMATCHED_ROUTE when none did: label metrics by this, never by the raw path), HTTP status, seconds since arrival.
   */
  readonly onResponse?: (r: {
    readonly method: string;
    readonly path: string;
    readonly route: string;
    readonly status: number;
    readonly seconds: number;
  }) => void;
  /**
   * API keys. With any, every /v1/* request must present one (`Authorization: Bearer KEY` or
   * `x-api-key: KEY`) or gets 401; /health and /ready stay open. None: the API is open.
   */
  readonly apiKeys?: readonly string[];
  /**
   * Salt each request's block-hash chain with its API key, so no key ever gets a cache hit on another
   * key's prompt (a request's own cache_salt still applies within its key). Needs apiKeys.
   */
  readonly isolateCachePerKey?: boolean;
  /** Per-client limits (the client is its API key, or its address when there are no keys); default none. */
  readonly limits?: ClientLimits;
  /** Time a client has to send a request's headers, in ms; default 10000. Past it: 408 and the connection closes. */
  readonly headersTimeoutMs?: number;
  /** Time a client has to send a whole request (headers and body), in ms; default 30000. */
  readonly requestTimeoutMs?: number;
  /** How long an idle keep-alive connection stays open between requests, in ms; default 5000. */
  readonly keepAliveTimeoutMs?: number;
  /** Most open connections; past it new ones are closed at once; default 4096. */
  readonly maxConnections?: number;
  /**
   * How long a response write may wait for a client that stopped reading, in ms; default 30000. Past it the
   * request is aborted (its engine requests and KV blocks freed) and the connection closed.
   */
  readonly writeTimeoutMs?: number;
  /**
   * Longest prompt in characters, checked before tokenizing (the token limit is checked after); default per
   * model: maxModelLen × MAX_CHARS_PER_TOKEN.
   */
  readonly maxPromptChars?: number;
  /** The tool-call syntax of every model under tool_choice auto; default each model's own (ServedModel.toolCallParser). */
  readonly toolCallParser?: ToolCallParserName;
}

/** What the edge enforces, the same for `serve` and the gateway (see ApiServerOptions for each). */
export type EdgeOptions = Pick<
  ApiServerOptions,
  | 'apiKeys'
  | 'isolateCachePerKey'
  | 'limits'
  | 'headersTimeoutMs'
  | 'requestTimeoutMs'
  | 'keepAliveTimeoutMs'
  | 'maxConnections'
  | 'writeTimeoutMs'
  | 'maxPromptChars'
  | 'toolCallParser'
>;

export interface ApiServer {
  readonly server: http.Server;
  /** Starts listening; resolves with the base URL (e.g. http://127.0.0.1:8000). */
  listen(): Promise<{ readonly url: string }>;
  /** Stops accepting, lets in-flight requests finish within the grace period, then cuts the rest. */
  close(): Promise<void>;
  /** Readiness for /ready and for serving: false answers 503 (startup, draining). */
  setReady(ready: boolean): void;
}

export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;
export const DEFAULT_PORT = 8000;
export const DEFAULT_SHUTDOWN_GRACE_MS = 5000;
/** Server timeouts and caps (see ApiServerOptions). */
export const EDGE_DEFAULTS = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 4096,
  writeTimeoutMs: 30_000,
} as const;
/** The route of a request no route serves (any path a client makes up). */
export const UNMATCHED_ROUTE = 'unmatched';
const MODEL_ROUTE = '/v1/models/{model}';

/** An incoming x-request-id is kept if it looks like an id (it is echoed into logs and headers). */
const REQUEST_ID = /^[\w.:-]{1,128}$/;

type Handler = (ctx: RequestContext, req: IncomingMessage) => Promise<void> | void;

export function createApiServer(opts: ApiServerOptions): ApiServer {
  if (opts.models.length === 0) throw new Error('createApiServer: at least one model is required');
  const models = new Map<string, ServedModel>();
  for (const m of opts.models) {
    if (models.has(m.id)) throw new Error(`createApiServer: duplicate model id ${m.id}`);
    models.set(m.id, {
      ...m,
      maxPromptChars: opts.maxPromptChars ?? m.maxPromptChars,
      toolCallParser: opts.toolCallParser ?? m.toolCallParser,
    });
  }
  const firstModel = models.get(opts.models[0]!.id)!;
  const keys = opts.apiKeys !== undefined && opts.apiKeys.length > 0 ? new ApiKeys(opts.apiKeys) : undefined;
  if (opts.isolateCachePerKey && keys === undefined) throw new Error('createApiServer: isolating caches per API key needs API keys');
  const limiter = new ClientLimiter(opts.limits ?? {});
  const edge = { ...EDGE_DEFAULTS, ...definedOnly(opts) };
  if (edge.headersTimeoutMs > edge.requestTimeoutMs)
    throw new Error('createApiServer: the headers timeout must not exceed the request timeout');
  const host = opts.host ?? '127.0.0.1';
  const maxBodyBytes = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const logger = opts.logger ?? silentLogger;
  const startedAt = Math.floor(Date.now() / 1000);
  let ready = opts.ready ?? true;

  const isReady = (): boolean => ready && [...models.values()].every((m) => m.engine.isReady());

  const resolveModel = (name: string | undefined): ServedModel => {
    // Without a model name, serve the first model, as vLLM does.
    const model = name === undefined ? firstModel : models.get(name);
    if (model === undefined) throw ApiError.modelNotFound(name ?? '');
    if (!ready) throw ApiError.notReady('The server is not ready to serve requests.');
    if (!model.engine.isReady()) throw ApiError.notReady(`The model \`${model.id}\` is not ready yet.`);
    return model;
  };

  const completions: Handler = async (ctx, req) => {
    const body = parseCompletionRequest(await readJsonBody(req, maxBodyBytes));
    await serveCompletion(ctx, resolveModel(body.model), body);
  };

  const chat: Handler = async (ctx, req) => {
    const body = parseChatRequest(await readJsonBody(req, maxBodyBytes));
    await serveChat(ctx, resolveModel(body.model), body);
  };

  const messages: Handler = async (ctx, req) => {
    const body = parseMessagesRequest(await readJsonBody(req, maxBodyBytes));
    await serveMessages(ctx, resolveModel(body.model), body);
  };

  const countTokens: Handler = async (ctx, req) => {
    const body = parseMessagesRequest(await readJsonBody(req, maxBodyBytes), true);
    sendJson(ctx.res, 200, countMessageTokens(resolveModel(body.model), body));
  };

  const tokenizeRoute: Handler = async (ctx, req) => {
    const body = parseTokenizeRequest(await readJsonBody(req, maxBodyBytes));
    sendJson(ctx.res, 200, tokenize(resolveModel(body.model), body));
  };

  const detokenizeRoute: Handler = async (ctx, req) => {
    const body = parseDetokenizeRequest(await readJsonBody(req, maxBodyBytes));
    sendJson(ctx.res, 200, detokenize(resolveModel(body.model), body.tokens));
  };

  const modelCard = (m: ServedModel): Record<string, unknown> => ({
    id: m.id,
    object: 'model',
    created: m.created ?? startedAt,
    owned_by: 'pdserve',
    max_model_len: m.maxModelLen,
  });

  const routes = new Map<string, Readonly<Record<string, Handler>>>([
    ['/v1/completions', { POST: completions }],
    ['/v1/chat/completions', { POST: chat }],
    ['/v1/messages', { POST: messages }],
    ['/v1/messages/count_tokens', { POST: countTokens }],
    ['/tokenize', { POST: tokenizeRoute }],
    ['/detokenize', { POST: detokenizeRoute }],
    ['/version', { GET: (ctx) => sendJson(ctx.res, 200, { version: PDSERVE_VERSION }) }],
    ['/v1/models', { GET: (ctx) => sendJson(ctx.res, 200, { object: 'list', data: opts.models.map(modelCard) }) }],
    ['/health', { GET: (ctx) => sendJson(ctx.res, 200, { status: 'ok' }) }],
    [
      '/ready',
      {
        GET: (ctx) => {
          const engines = Object.fromEntries(opts.models.map((m) => [m.id, m.engine.isReady()]));
          sendJson(ctx.res, isReady() ? 200 : 503, { status: isReady() ? 'ready' : 'not_ready', serving: ready, models: engines });
        },
      },
    ],
  ]);

  /** The template of the route that serves `path`: one of a fixed few, whatever the client sent. */
  const routeOf = (path: string): string => (routes.has(path) ? path : /^\/v1\/models\/.+$/.test(path) ? MODEL_ROUTE : UNMATCHED_ROUTE);

  const route = (method: string, path: string): Handler => {
    const modelPath = /^\/v1\/models\/(.+)$/.exec(path);
    const methods: Readonly<Record<string, Handler>> | undefined = modelPath
      ? {
          GET: (ctx) => {
            const id = safeDecode(modelPath[1]!);
            const m = models.get(id);
            if (m === undefined) throw ApiError.modelNotFound(id);
            sendJson(ctx.res, 200, modelCard(m));
          },
        }
      : routes.get(path);
    if (methods === undefined) throw ApiError.routeNotFound(method, path);
    const handler = methods[method === 'HEAD' ? 'GET' : method];
    if (handler === undefined) {
      const allow = Object.keys(methods);
      throw ApiError.methodNotAllowed(method, path, allow.includes('GET') ? [...allow, 'HEAD'] : allow);
    }
    return handler;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const t0 = performance.now();
    const incoming = req.headers['x-request-id'];
    const requestId = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    const log = logger.child({ requestId });
    const method = req.method ?? 'GET';
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    res.setHeader('x-request-id', requestId);
    // One controller per HTTP request: aborted when the client goes away or the handler is done, and
    // every engine request of this HTTP request listens to it.
    const ac = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) log.info({ method, path }, 'client disconnected');
      ac.abort();
      // Probes hit /health and /ready every few seconds; keep them out of the info log.
      const level = path === '/health' || path === '/ready' ? 'debug' : 'info';
      log[level]({ method, path, status: res.statusCode, durationMs: Math.round(performance.now() - t0) }, 'request');
      opts.onResponse?.({ method, path, route: routeOf(path), status: res.statusCode, seconds: (performance.now() - t0) / 1000 });
    });
    try {
      const client = isApiPath(path) ? admitClient(req, res) : undefined;
      const ctx: RequestContext = {
        requestId,
        signal: ac.signal,
        log: client?.key === undefined ? log : log.child({ key: client.key }),
        res,
        cacheTenant: opts.isolateCachePerKey ? client?.key : undefined,
        writeTimeoutMs: edge.writeTimeoutMs,
      };
      await route(method, path)(ctx, req);
    } catch (err) {
      const e = toApiError(err);
      if (e.status >= 500) log.error({ method, path, err }, 'request failed');
      else log.debug({ method, path, status: e.status, code: e.code, message: e.message }, 'request refused');
      if (!res.headersSent) {
        // Anthropic's route answers in Anthropic's error shape, so its SDK reads the message.
        const dialect = path === '/v1/messages' || path === '/v1/messages/count_tokens' ? 'anthropic' : 'openai';
        if (e.status === 413) sendErrorLingering(req, res, e, dialect);
        else sendError(res, e, dialect);
      } else if (!res.writableEnded) {
        res.end();
      }
    } finally {
      ac.abort();
    }
  };

  /**
   * Authenticates a /v1/* request (401 without a good key) and admits it under its client's limits (429
   * over them); the admission is released when the response closes. The client is the key, else the address.
   */
  const admitClient = (req: IncomingMessage, res: ServerResponse): { readonly key: KeyId | undefined } => {
    let key: KeyId | undefined;
    if (keys !== undefined) {
      const presented = presentedKey(req);
      key = presented === undefined ? undefined : keys.match(presented);
      if (key === undefined) throw ApiError.unauthorized(presented !== undefined);
    }
    const release = limiter.admit(key ?? `addr:${req.socket.remoteAddress ?? ''}`);
    res.once('close', release);
    return { key };
  };

  const server = http.createServer(
    {
      headersTimeout: edge.headersTimeoutMs,
      requestTimeout: edge.requestTimeoutMs,
      keepAliveTimeout: edge.keepAliveTimeoutMs,
      // Node checks the two timeouts above on this period (30 s by default, which would stretch them).
      connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(edge.headersTimeoutMs / 4))),
    },
    (req, res) => {
      handle(req, res).catch((err: unknown) => {
        // handle() catches everything; this is the last line of defence for the process.
        logger.error({ err }, 'unhandled error in request handler');
        if (!res.headersSent) sendError(res, ApiError.internal());
        else res.destroy();
      });
    },
  );

  server.maxConnections = edge.maxConnections;

  return {
    server,
    listen: () =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(opts.port ?? DEFAULT_PORT, host, () => {
          server.off('error', reject);
          const { port } = server.address() as AddressInfo;
          const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
          logger.info({ url, models: opts.models.map((m) => m.id) }, 'listening');
          resolve({ url });
        });
      }),
    close: () =>
      new Promise((resolve) => {
        ready = false;
        if (!server.listening) return resolve();
        const timer = setTimeout(() => server.closeAllConnections(), opts.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS);
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        server.closeIdleConnections();
      }),
    setReady: (value: boolean) => {
      ready = value;
    },
  };
}

/**
 * Paths under /v1 and vLLM's /tokenize and /detokenize are the API proper: authenticated and limited.
 * /health, /ready and /version stay open.
 */
function isApiPath(path: string): boolean {
  return path === '/v1' || path.startsWith('/v1/') || path === '/tokenize' || path === '/detokenize';
}

/** The server timeouts and caps the caller set (undefined ones fall back to EDGE_DEFAULTS). */
function definedOnly(opts: ApiServerOptions): Partial<Record<keyof typeof EDGE_DEFAULTS, number>> {
  const out: Partial<Record<keyof typeof EDGE_DEFAULTS, number>> = {};
  for (const k of Object.keys(EDGE_DEFAULTS) as (keyof typeof EDGE_DEFAULTS)[]) {
    const v = opts[k];
    if (v === undefined) continue;
    if (!(Number.isInteger(v) && v > 0)) throw new Error(`createApiServer: ${k} must be a positive integer, got ${v}`);
    out[k] = v;
  }
  return out;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
