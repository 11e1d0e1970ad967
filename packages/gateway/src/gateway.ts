// The gateway service: OpenAI HTTP API → KV-aware router → workers over gRPC.
import { createApiServer, defaultToolCallParser, type ApiServer, type EdgeOptions, type Logger } from '@pdserve/api';
import type { ControlPlane } from '@pdserve/control-plane';
import type { TlsMaterial } from '@pdserve/rpc';
import { collectDefaultMetrics, gatewayMetrics, Registry, startAdminServer, type AdminServer } from '@pdserve/metrics';
import { SERVICE_TIERS } from '@pdserve/contracts';
import { loadModelSpec } from '@pdserve/model/config';
import { Router, type DisaggConfig, type PolicyName } from '@pdserve/router';
import { Tokenizer } from '@pdserve/tokenizer';
import { Admission, type AdmissionOptions } from './admission';
import { ClusterClient } from './cluster-client';
import { ClusterView } from './cluster-view';
import { MeteredEngine } from './metered-engine';
import { clusterStatusSource, GrpcStatusProbes } from './status';
import { statusRoutes } from './status-page';

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
  /** Admin port (/metrics, /health, /ready, /status); undefined = no admin server. */
  readonly adminPort?: number;
  readonly blockSize?: number;
  readonly policy?: PolicyName;
  readonly disagg?: Partial<DisaggConfig>;
  readonly maxModelLen?: number;
  readonly resyncIntervalMs?: number;
  /** API keys, per-key limits, server timeouts and caps, cache isolation: as `serve` has them. */
  readonly edge?: EdgeOptions;
  /** Resumptions of a broken stream on another decode worker; default 3 (MIGRATION_DEFAULTS). */
  readonly migrationLimit?: number;
  /** Send each prefill chunk's KV while the next computes (disaggregated requests); default true. */
  readonly kvStreaming?: boolean;
  /** With kvStreaming, the decode worker computes the prompt's last block and samples the first token; default true. */
  readonly decodeComputesTail?: boolean;
  /** SLOs per service class and the cost model that predicts against them (admission.ts); default: none. */
  readonly admission?: AdmissionOptions;
  /** mTLS on every channel to workers and kv-store nodes; plaintext without. */
  readonly tls?: TlsMaterial;
}

export interface Gateway {
  readonly url: string;
  readonly adminUrl: string | undefined;
  readonly router: Router;
  readonly view: ClusterView;
  readonly registry: Registry;
  /** Resolves once a completion can be served (a worker able to decode has joined). */
  ready(): Promise<void>;
  close(): Promise<void>;
}

export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const registry = new Registry();
  collectDefaultMetrics(registry);
  const router = new Router({ blockSize: opts.blockSize ?? 16, policy: opts.policy, disagg: opts.disagg });
  const metrics = gatewayMetrics(registry, { routerStats: () => router.stats() });
  // The admin port opens first, so probes and scrapes reach a gateway that is still loading its tokenizer;
  // /ready stays 503 until the API listens and a decode worker is live (else it could answer nothing).
  let cluster: ClusterClient | undefined;
  let listening = false;
  let view: ClusterView | undefined;
  const isReady = (): boolean => listening && (cluster?.isReady() ?? false);
  // The status page is an operator's, so it sits on the admin port beside /metrics, not on the API port.
  const status = statusRoutes(
    clusterStatusSource({ model: opts.modelId, controlPlane: opts.controlPlane, view: () => view, router, ready: isReady }),
    new GrpcStatusProbes(undefined, opts.tls),
  );
  const admin: AdminServer | undefined =
    opts.adminPort === undefined
      ? undefined
      : await startAdminServer({ host: opts.host, port: opts.adminPort, registry, isReady, routes: status.routes });
  try {
    const spec = loadModelSpec(opts.modelDir, opts.modelId);
    const tokenizer = await Tokenizer.fromDir(opts.modelDir);
    view = new ClusterView({
      controlPlane: opts.controlPlane,
      router,
      model: opts.modelId,
      logger: opts.logger,
      resyncIntervalMs: opts.resyncIntervalMs,
      tls: opts.tls,
    });
    await view.start();
    const maxModelLen = Math.min(opts.maxModelLen ?? spec.maxPositionEmbeddings, spec.maxPositionEmbeddings);
    const model = { model: opts.modelId };
    cluster = new ClusterClient({
      modelId: opts.modelId,
      maxModelLen,
      blockSize: router.blockSize,
      router,
      view,
      logger: opts.logger,
      migrationLimit: opts.migrationLimit,
      kvStreaming: opts.kvStreaming,
      decodeComputesTail: opts.decodeComputesTail,
      onMigration: (m) => {
        metrics.migrations.inc({ ...model, outcome: m.outcome });
        if (m.outcome === 'resumed') metrics.migrationSeconds.observe(model, m.seconds);
      },
      admission: new Admission(opts.admission),
      onAdmission: (e) => {
        const labels = { ...model, class: e.tier };
        if (e.kind === 'first-token') metrics.actualTtft.observe(labels, e.seconds);
        else {
          metrics.admissions.inc({ ...labels, decision: e.kind });
          if (e.kind === 'admitted') metrics.predictedTtft.observe(labels, e.predictedTtftSeconds);
        }
      },
    });
    // Every class's series exist from the start, so "none refused" reads as 0, not as no data.
    for (const tier of SERVICE_TIERS)
      for (const decision of ['admitted', 'refused']) metrics.admissions.inc({ ...model, class: tier, decision }, 0);
    for (const outcome of ['resumed', 'exhausted']) metrics.migrations.inc({ ...model, outcome }, 0);
    const api: ApiServer = createApiServer({
      models: [
        {
          id: opts.modelId,
          engine: new MeteredEngine(cluster, metrics),
          tokenizer,
          maxModelLen,
          toolCallParser: defaultToolCallParser(spec.modelType),
        },
      ],
      host: opts.host,
      port: opts.port,
      logger: opts.logger,
      ...opts.edge,
      // By route template, so made-up paths add no series; probes of /health and /ready are not traffic.
      onResponse: (r) => {
        if (r.route === '/health' || r.route === '/ready') return;
        metrics.requests.inc({ model: opts.modelId, route: r.route, status: String(r.status) });
        metrics.requestDuration.observe({ model: opts.modelId, route: r.route }, r.seconds);
      },
    });
    const { url } = await api.listen();
    listening = true;
    const clusterView = view;
    return {
      url,
      adminUrl: admin?.url,
      router,
      view: clusterView,
      registry,
      ready: () => clusterView.serving(),
      async close() {
        listening = false;
        await api.close();
        await admin?.close();
        status.close();
        clusterView.close();
      },
    };
  } catch (err) {
    // A gateway that cannot start must not leave its admin port holding the process open.
    await admin?.close().catch(() => undefined);
    status.close();
    view?.close();
    throw err;
  }
}
