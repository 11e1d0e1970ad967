import { randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serveChat } from './chat';
import { serveCompletion } from './completions';
import { ApiError, toApiError } from './errors';
import { readJsonBody, sendError, sendErrorLingering, sendJson } from './http';
import { childLogger, silentLogger, type Logger } from './logger';
import type { ServedModel } from './prompt';
import { parseChatRequest, parseCompletionRequest } from './requests';
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
  readonly onResponse?: (r: { readonly method: string; readonly path: string; readonly route: string; readonly status: number; readonly seconds: number }) => void;
}

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
    models.set(m.id, m);
  }
  const host = opts.host ?? '127.0.0.1';
  const maxBodyBytes = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const logger = opts.logger ?? silentLogger;
  const startedAt = Math.floor(Date.now() / 1000);
  let ready = opts.ready ?? true;

  const isReady = (): boolean => ready && [...models.values()].every((m) => m.engine.isReady());

  const resolveModel = (name: string | undefined): ServedModel => {
    // Without a model name, serve the first model, as vLLM does.
    const model = name === undefined ? opts.models[0] : models.get(name);
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
    const log = childLogger(logger, { requestId });
    const method = req.method ?? 'GET';
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    res.setHeader('x-request-id', requestId);
    // One controller per HTTP request: aborted when the client goes away or the handler is done, and
    // every engine request of this HTTP request listens to it.
    const ac = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) log.info('client disconnected', { method, path });
      ac.abort();
      // Probes hit /health and /ready every few seconds; keep them out of the info log.
      const level = path === '/health' || path === '/ready' ? 'debug' : 'info';
      log[level]('request', { method, path, status: res.statusCode, durationMs: Math.round(performance.now() - t0) });
      opts.onResponse?.({ method, path, route: routeOf(path), status: res.statusCode, seconds: (performance.now() - t0) / 1000 });
    });
    const ctx: RequestContext = { requestId, signal: ac.signal, log, res };
    try {
      await route(method, path)(ctx, req);
    } catch (err) {
      const e = toApiError(err);
      if (e.status >= 500) log.error('request failed', { method, path, err });
      else log.debug('request refused', { method, path, status: e.status, code: e.code, message: e.message });
      if (!res.headersSent) {
        if (e.status === 413) sendErrorLingering(req, res, e);
        else sendError(res, e);
      } else if (!res.writableEnded) {
        res.end();
      }
    } finally {
      ac.abort();
    }
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      // handle() catches everything; this is the last line of defence for the process.
      logger.error('unhandled error in request handler', { err });
      if (!res.headersSent) sendError(res, ApiError.internal());
      else res.destroy();
    });
  });

  return {
    server,
    listen: () =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(opts.port ?? DEFAULT_PORT, host, () => {
          server.off('error', reject);
          const { port } = server.address() as AddressInfo;
          const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
          logger.info('listening', { url, models: opts.models.map((m) => m.id) });
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

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
