import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from './deps';
import { ApiError, errorBody, type ErrorDialect } from './errors';

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
  const data = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(data),
  });
  res.end(data);
}

export function sendError(res: ServerResponse, err: ApiError, dialect: ErrorDialect = 'openai'): void {
  sendJson(res, err.status, errorBody(err, dialect), err.headers);
}

/**
 * Reads a JSON body of at most `limitBytes`. A declared or actual larger body is refused with 413 as
 * soon as that is known: collecting stops and nothing more is buffered (see sendErrorLingering for the rest).
 */
export function readJsonBody(req: IncomingMessage, limitBytes: number): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limitBytes) return Promise.reject(ApiError.bodyTooLarge(limitBytes));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limitBytes) {
        cleanup();
        chunks.length = 0;
        reject(ApiError.bodyTooLarge(limitBytes));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      const text = Buffer.concat(chunks, size).toString('utf8');
      if (text.trim() === '') return reject(ApiError.invalidJson('the body is empty'));
      try {
        resolve(JSON.parse(text) as unknown);
      } catch (err) {
        reject(ApiError.invalidJson(err instanceof Error ? err.message : 'invalid JSON'));
      }
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

/** After an early response, how long the rest of a request body may take to arrive, in ms. */
export const LINGER_MS = 5000;
/** After an early response, how many more body bytes are read (and dropped) before the connection is cut. */
export const LINGER_MAX_BYTES = 64 * 1024 * 1024;

/**
 * Answers before the body was read (413) and drops the rest of the body without buffering it, so that the
 * client, still uploading, reads the answer instead of a reset (nginx's lingering close). The answer is
 * written whole at once, but the response ends only once the body is in (or a bound is hit): ending it
 * earlier would let Node close a `Connection: close` socket under an upload still arriving, which the
 * kernel answers with a reset. Bounded in time and bytes; past either bound the connection is cut.
 */
export function sendErrorLingering(req: IncomingMessage, res: ServerResponse, err: ApiError, dialect: ErrorDialect = 'openai'): void {
  const data = JSON.stringify(errorBody(err, dialect));
  res.writeHead(err.status, {
    ...err.headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(data),
  });
  if (req.complete || req.destroyed) {
    res.end(data);
    return;
  }
  res.write(data);
  let dropped = 0;
  const finish = (): void => {
    clearTimeout(timer);
    if (!res.writableEnded) res.end();
  };
  const cut = (): void => {
    clearTimeout(timer);
    req.socket.destroy();
  };
  const timer = setTimeout(cut, LINGER_MS);
  timer.unref();
  req.on('data', (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > LINGER_MAX_BYTES) cut();
  });
  req.once('end', finish);
  req.once('close', finish);
  req.resume();
}

/**
 * A response already written whole must reach the client within `ms`; a client that stopped reading is cut
 * off then, so its socket and buffered body do not stay forever.
 */
export function finishWithin(res: ServerResponse, ms: number, log: Pick<Logger, 'warn'>): void {
  if (res.writableFinished || res.destroyed) return;
  const timer = setTimeout(() => {
    log.warn({ timeoutMs: ms }, 'client stopped reading; response dropped');
    res.destroy();
  }, ms);
  timer.unref();
  res.once('close', () => clearTimeout(timer));
  res.once('finish', () => clearTimeout(timer));
}

/**
 * Server-sent events in the OpenAI dialect: `data: <json>\n\n` lines, ended by `data: [DONE]`. A write
 * that waits longer than `writeTimeoutMs` for the client to read destroys the response: its close aborts
 * the request, which frees its engine requests and their KV blocks.
 */
export class SseStream {
  constructor(
    private readonly res: ServerResponse,
    private readonly writeTimeoutMs?: number,
    private readonly onStalled?: () => void,
  ) {}

  open(headers: Readonly<Record<string, string>> = {}): void {
    this.res.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      // Proxies such as nginx must not buffer the stream.
      'x-accel-buffering': 'no',
    });
    this.res.flushHeaders();
  }

  /** Writes one event; waits while the client is slow so memory stays bounded. */
  async send(data: unknown): Promise<void> {
    await this.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  async done(): Promise<void> {
    await this.write('data: [DONE]\n\n');
    this.res.end();
  }

  /** A named event (`event: <name>`), the Anthropic dialect, whose streams end without [DONE]. */
  async event(name: string, data: unknown): Promise<void> {
    await this.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  end(): void {
    if (!this.res.writableEnded) this.res.end();
  }

  private async write(s: string): Promise<void> {
    if (this.res.destroyed || this.res.writableEnded) return;
    if (this.res.write(s)) return;
    await new Promise<void>((resolve) => {
      const timer =
        this.writeTimeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              this.onStalled?.();
              this.res.destroy();
            }, this.writeTimeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.res.off('drain', done);
        this.res.off('close', done);
        resolve();
      };
      this.res.on('drain', done);
      this.res.on('close', done);
    });
  }
}
