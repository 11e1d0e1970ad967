// A whole worker process: engine + Worker gRPC service + metrics/health admin port.
import { randomBytes } from 'node:crypto';
import { LLMEngine, type EngineOptions } from '@pdserve/engine';
import { collectDefaultMetrics, Registry, startAdminServer, workerMetrics, type AdminServer } from '@pdserve/metrics';
import { WorkerServer, type WorkerServerOptions } from './server';

/** The server's own settings, plus what the service builds for it: the engine and the admin port. */
export type WorkerServiceOptions = Pick<
  WorkerServerOptions,
  | 'role'
  | 'controlPlane'
  | 'logger'
  | 'host'
  | 'advertiseHost'
  | 'grpcPort'
  | 'dataPort'
  | 'transports'
  | 'sendTransport'
  | 'kvStore'
  | 'tls'
> & {
  /** Default: role + a random suffix. */
  readonly instanceId?: string;
  readonly engine: EngineOptions;
  /** Admin port (/metrics, /health, /ready); undefined = none. */
  readonly adminPort?: number;
};

export interface WorkerService {
  readonly instanceId: string;
  readonly server: WorkerServer;
  readonly engine: LLMEngine;
  readonly grpcAddress: string;
  readonly adminUrl: string | undefined;
  readonly registry: Registry;
  /** Graceful: deregister, finish in-flight work (bounded), stop. */
  drain(graceMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startWorkerService(opts: WorkerServiceOptions): Promise<WorkerService> {
  const instanceId = opts.instanceId ?? `${opts.role}-${randomBytes(4).toString('hex')}`;
  const registry = new Registry();
  collectDefaultMetrics(registry);
  // The admin port opens first, so probes and scrapes reach a worker that is still loading its model;
  // /ready stays 503 until the engine is up and the worker is registered, and again once it drains.
  let serving = false;
  let engine: LLMEngine | undefined;
  const admin: AdminServer | undefined =
    opts.adminPort === undefined
      ? undefined
      : await startAdminServer({ host: opts.host, port: opts.adminPort, registry, isReady: () => serving && (engine?.isReady() ?? false) });
  let server: WorkerServer | undefined;
  try {
    let metrics: ReturnType<typeof workerMetrics> | undefined;
    // The served model id labels the engine's series; it is known once the model is loaded, before any step.
    let model = { model: '' };
    engine = await LLMEngine.create({
      ...opts.engine,
      onStep: (s) => {
        metrics?.stepSeconds.observe({ ...model, phase: s.phase }, s.seconds);
        metrics?.batchSize.observe(model, s.batchSize);
      },
      onAdmitted: (a) => metrics?.queueTime.observe(model, a.queueSeconds),
    });
    const loaded = engine;
    model = { model: loaded.modelId };
    metrics = workerMetrics(registry, { engineStats: () => loaded.stats(), model: loaded.modelId });
    const peerRole = opts.role === 'prefill' ? 'decode' : 'prefill';
    // Series this worker will have exist from the start at 0, so "none yet" reads as 0, not as no data.
    const direction = opts.role === 'prefill' ? 'out' : 'in';
    metrics.kvTransferBytes.inc({ direction, peer_role: peerRole }, 0);
    metrics.kvTransferFailures.inc({ direction, peer_role: peerRole }, 0);
    server = new WorkerServer({
      role: opts.role,
      instanceId,
      engine,
      controlPlane: opts.controlPlane,
      logger: opts.logger,
      host: opts.host,
      advertiseHost: opts.advertiseHost,
      grpcPort: opts.grpcPort,
      dataPort: opts.dataPort,
      adminAddress: admin ? new URL(admin.url).host : undefined,
      transports: opts.transports,
      sendTransport: opts.sendTransport,
      kvStore: opts.kvStore,
      tls: opts.tls,
      onTransfer: (direction, bytes, seconds, transport) => {
        metrics?.kvTransferBytes.inc({ direction, peer_role: peerRole }, bytes);
        metrics?.kvTransferSeconds.observe({ direction, transport }, seconds);
      },
      onTransferFailed: (direction) => metrics?.kvTransferFailures.inc({ direction, peer_role: peerRole }),
    });
    const grpcAddress = await server.start();
    serving = true;
    const worker = server;
    return {
      instanceId,
      server: worker,
      engine: loaded,
      grpcAddress,
      adminUrl: admin?.url,
      registry,
      async drain(graceMs) {
        serving = false;
        await worker.drain(graceMs);
        await admin?.close();
        await loaded.close();
      },
      async close() {
        serving = false;
        await worker.close();
        await admin?.close();
        await loaded.close();
      },
    };
  } catch (err) {
    // A worker that cannot start must not leave its admin port (or engine thread) holding the process open.
    await server?.close().catch(() => undefined);
    await admin?.close().catch(() => undefined);
    await engine?.close().catch(() => undefined);
    throw err;
  }
}
