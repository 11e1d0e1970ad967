// A whole worker process: engine + Worker gRPC service + metrics/health admin port.
import { randomBytes } from 'node:crypto';
import type { ControlPlane, Logger } from '@pdserve/control-plane';
import { LLMEngine, type EngineOptions } from '@pdserve/engine';
import { collectDefaultMetrics, Registry, startAdminServer, workerMetrics, type AdminServer } from '@pdserve/metrics';
import type { TransportKind } from '@pdserve/transfer';
import { WorkerServer, type WorkerRole } from './server';

export interface WorkerServiceOptions {
  readonly role: WorkerRole;
  readonly instanceId?: string;
  readonly engine: EngineOptions;
  readonly controlPlane: ControlPlane;
  readonly logger: Logger;
  readonly host?: string;
  readonly advertiseHost?: string;
  readonly grpcPort?: number;
  /** Admin port (/metrics, /health, /ready); undefined = none. */
  readonly adminPort?: number;
  readonly transports?: readonly TransportKind[];
  readonly sendTransport?: 'auto' | TransportKind;
}

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
  let metrics: ReturnType<typeof workerMetrics> | undefined;
  const engine = await LLMEngine.create({
    ...opts.engine,
    onStep: (s) => {
      metrics?.stepSeconds.observe({ phase: s.phase }, s.seconds);
      metrics?.batchSize.observe(s.batchSize);
    },
  });
  metrics = workerMetrics(registry, { engineStats: () => engine.stats() });
  const peerRole = opts.role === 'prefill' ? 'decode' : 'prefill';
  let admin: AdminServer | undefined;
  let server: WorkerServer | undefined;
  if (opts.adminPort !== undefined) {
    admin = await startAdminServer({ host: opts.host, port: opts.adminPort, registry, isReady: () => engine.isReady() && server?.grpcAddress !== '' });
  }
  server = new WorkerServer({
    role: opts.role,
    instanceId,
    engine,
    controlPlane: opts.controlPlane,
    logger: opts.logger,
    host: opts.host,
    advertiseHost: opts.advertiseHost,
    grpcPort: opts.grpcPort,
    adminAddress: admin ? new URL(admin.url).host : undefined,
    transports: opts.transports,
    sendTransport: opts.sendTransport,
    onTransfer: (direction, bytes, seconds) => {
      metrics?.kvTransferBytes.inc({ direction, peer_role: peerRole }, bytes);
      metrics?.kvTransferSeconds.observe({ direction, transport: 'any' }, seconds);
    },
  });
  const grpcAddress = await server.start();
  const close = async (): Promise<void> => {
    await server!.close();
    await admin?.close();
    await engine.close();
  };
  return {
    instanceId,
    server: server!,
    engine,
    grpcAddress,
    adminUrl: admin?.url,
    registry,
    async drain(graceMs) {
      await server!.drain(graceMs);
      await admin?.close();
      await engine.close();
    },
    close,
  };
}
