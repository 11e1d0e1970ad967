// The admin port every service opens beside its API: /metrics for Prometheus, /health for the liveness probe
// (the process answers), /ready for the readiness probe (the service can take traffic, e.g. its model loaded).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface AdminServerOptions {
  /** Address to listen on; default 127.0.0.1 (use 0.0.0.0 in a pod). */
  readonly host?: string;
  /** Port; 0 picks a free one. */
  readonly port: number;
  readonly registry: Registry;
  /** Asked on every /ready request; false answers 503 so the pod leaves its Service's endpoints. */
  readonly isReady: () => boolean;
  /** More GET pages by path (e.g. the gateway's /status), served beside the three above. */
  readonly routes?: ReadonlyMap<string, () => Promise<AdminReply> | AdminReply>;
}

export interface AdminReply {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
  /** Extra response headers (e.g. a Content-Security-Policy for an HTML page). */
  readonly headers?: Readonly<Record<string, string>>;
}

export interface AdminServer {
  /** e.g. http://127.0.0.1:9090 */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

function reply(
  res: ServerResponse,
  status: number,
  body: string,
  contentType = 'text/plain; charset=utf-8',
  headers: Readonly<Record<string, string>> = {},
): void {
  res.writeHead(status, { ...headers, 'content-type': contentType, 'cache-control': 'no-store' });
  res.end(body);
}

async function handle(opts: AdminServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    return reply(res, 405, 'method not allowed\n');
  }
  const path = (req.url ?? '/').split('?')[0];
  switch (path) {
    case '/metrics':
      return reply(res, 200, await opts.registry.metrics(), opts.registry.contentType);
    case '/health':
      return reply(res, 200, 'ok\n');
    case '/ready': {
      let ready = false;
      try {
        ready = opts.isReady();
      } catch {
        // A throwing readiness check means not ready, never a crashed admin port.
      }
      return ready ? reply(res, 200, 'ready\n') : reply(res, 503, 'not ready\n');
    }
    default: {
      const route = opts.routes?.get(path);
      if (route !== undefined) {
        const r = await route();
        return reply(res, r.status, r.body, r.contentType, r.headers);
      }
      return reply(res, 404, `not found: try ${['/metrics', '/health', '/ready', ...(opts.routes?.keys() ?? [])].join(', ')}\n`);
    }
  }
}

export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  const host = opts.host ?? '127.0.0.1';
  const server = createServer((req, res) => {
    handle(opts, req, res).catch((err: unknown) => {
      if (!res.headersSent) reply(res, 500, `metrics collection failed: ${err instanceof Error ? err.message : String(err)}\n`);
      else res.destroy();
    });
  });
  // Scrapes and probes are short; keep-alive sockets must not hold close() open.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${urlHost}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
