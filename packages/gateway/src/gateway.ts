// The gateway service: OpenAI HTTP API → KV-aware router → workers over gRPC.
import { createApiServer, type ApiServer, type Logger } from '@pdserve/api';
import type { ControlPlane } from '@pdserve/control-plane';
import { collectDefaultMetrics, gatewayMetrics, Registry, startAdminServer, type AdminServer } from '@pdserve/metrics';
import { loadModelSpec } from '@pdserve/model';
import { Router, type DisaggConfig, type PolicyName } from '@pdserve/router';
import { Tokenizer } from '@pdserve/tokenizer';
import { ClusterClient } from './cluster-client';
import { ClusterView } from './cluster-view';
import { MeteredEngine } from './metered-engine';

export interface GatewayOptions {
  /** The model directory (tokenizer, chat template, context length). */
  readonly modelDir: string;
  /** Served model id; must equal the workers' (it seeds the block hashes). */
  readonly modelId: string;
  readonly controlPlane: ControlPlane;
  readonly logger: Logger;
  readonly host?: string;
  /** OpenAI API port; default 8000; 0 = any free port. */
  readonly port?: number;
  /** Admin port (/metrics, /health, /ready); undefined = no admin server. */
  readonly adminPort?: number;
  readonly blockSize?: number;
  readonly policy?: PolicyName;
  readonly disagg?: Partial<DisaggConfig>;
  readonly maxModelLen?: number;
  readonly resyncIntervalMs?: number;
}

export interface Gateway {
  readonly url: string;
  readonly adminUrl: string | undefined;
  readonly router: Router;
  readonly view: ClusterView;
  readonly registry: Registry;
  close(): Promise<void>;
}

export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const spec = loadModelSpec(opts.modelDir, opts.modelId);
  const tokenizer = await Tokenizer.fromDir(opts.modelDir);
  const router = new Router({ blockSize: opts.blockSize ?? 16, policy: opts.policy, disagg: opts.disagg });
  const view = new ClusterView({ controlPlane: opts.controlPlane, router, model: opts.modelId, logger: opts.logger, resyncIntervalMs: opts.resyncIntervalMs });
  await view.start();
  const registry = new Registry();
  collectDefaultMetrics(registry);
  const metrics = gatewayMetrics(registry, { routerStats: () => router.stats() });
  const maxModelLen = Math.min(opts.maxModelLen ?? spec.maxPositionEmbeddings, spec.maxPositionEmbeddings);
  const cluster = new ClusterClient({ modelId: opts.modelId, maxModelLen, blockSize: router.blockSize, router, view, logger: opts.logger });
  const api: ApiServer = createApiServer({
    models: [{ id: opts.modelId, engine: new MeteredEngine(cluster, metrics), tokenizer, maxModelLen }],
    host: opts.host,
    port: opts.port,
    logger: opts.logger,
    onResponse: (r) => {
      if (!r.path.startsWith('/v1/')) return;
      metrics.requests.inc({ endpoint: r.path, status: String(r.status) });
      metrics.requestDuration.observe({ endpoint: r.path }, r.seconds);
    },
  });
  const { url } = await api.listen();
  let admin: AdminServer | undefined;
  if (opts.adminPort !== undefined) admin = await startAdminServer({ host: opts.host, port: opts.adminPort, registry, isReady: () => cluster.isReady() });
  return {
    url,
    adminUrl: admin?.url,
    router,
    view,
    registry,
    async close() {
      await api.close();
      await admin?.close();
      view.close();
    },
  };
}
