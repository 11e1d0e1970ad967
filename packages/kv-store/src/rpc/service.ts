// A whole kv-store process: store core + KvStore gRPC service + block directory + metrics/health admin port.
import { randomBytes } from 'node:crypto';
import type { ControlPlane, Logger } from '@pdserve/control-plane';
import { collectDefaultMetrics, kvStoreMetrics, Registry, startAdminServer, type AdminServer } from '@pdserve/metrics';
import type { TlsMaterial } from '@pdserve/rpc';
import type { TransportKind } from '@pdserve/transfer';
import { InProcessBlockDirectory, type BlockDirectory } from '../directory';
import type { StoredModel } from '../options';
import { RedisBlockDirectory } from '../redis-directory';
import { KvStore } from '../store';
import { KvStoreServer } from './server';

export interface KvStoreServiceOptions {
  readonly nodeId?: string;
  readonly controlPlane: ControlPlane;
  readonly logger: Logger;
  /** Memory tier budget in bytes. */
  readonly memoryBytes: number;
  /** Disk tier budget in bytes (0: no disk tier). */
  readonly diskBytes?: number;
  readonly diskDir?: string;
  /** Models served (with their layout, so that wrong-shape blocks are refused); undefined: any. */
  readonly models?: readonly StoredModel[];
  /** Redis URL for the block directory; the in-process directory (or `directory`) otherwise. */
  readonly redisUrl?: string;
  readonly directory?: BlockDirectory;
  readonly host?: string;
  readonly advertiseHost?: string;
  readonly grpcPort?: number;
  readonly dataPort?: number;
  /** Admin port (/metrics, /health, /ready); undefined = none. */
  readonly adminPort?: number;
  readonly transports?: readonly TransportKind[];
  /** Extra core options (watermarks, ttls) for tests. */
  readonly storeOptions?: Partial<Parameters<typeof KvStore.open>[0]>;
  /** mTLS on its gRPC server, transfer channels and data port; plaintext without. */
  readonly tls?: TlsMaterial;
}

export interface KvStoreService {
  readonly nodeId: string;
  readonly store: KvStore;
  readonly server: KvStoreServer;
  readonly grpcAddress: string;
  readonly adminUrl: string | undefined;
  readonly registry: Registry;
  /** Leaves the registry, stops serving; memory blocks are flushed to disk when there is a disk tier. */
  close(): Promise<void>;
}

/** The block directory embedded runs share (one per process, like the in-process control plane hub). */
export const processDirectory = new InProcessBlockDirectory();

export async function startKvStoreService(opts: KvStoreServiceOptions): Promise<KvStoreService> {
  const nodeId = opts.nodeId ?? `kv-store-${randomBytes(4).toString('hex')}`;
  const store = await KvStore.open({
    ...opts.storeOptions,
    memoryBytes: opts.memoryBytes,
    diskBytes: opts.diskBytes,
    diskDir: opts.diskDir,
    models: opts.models,
    logger: opts.logger,
  });
  const ownDirectory = opts.directory === undefined && opts.redisUrl !== undefined;
  const directory =
    opts.directory ??
    (opts.redisUrl !== undefined
      ? await RedisBlockDirectory.connect(opts.redisUrl, { cluster: opts.controlPlane.cluster, logger: opts.logger })
      : processDirectory);
  const registry = new Registry();
  collectDefaultMetrics(registry);
  kvStoreMetrics(registry, {
    tiers: () => {
      const s = store.stats();
      return (['memory', 'disk'] as const).map((tier) => ({ tier, ...s[tier] }));
    },
    misses: () => store.stats().disk.misses,
  });
  let admin: AdminServer | undefined;
  let server: KvStoreServer | undefined;
  if (opts.adminPort !== undefined) {
    admin = await startAdminServer({
      host: opts.host,
      port: opts.adminPort,
      registry,
      isReady: () => server?.grpcAddress !== '' && server !== undefined,
    });
  }
  server = new KvStoreServer({
    nodeId,
    store,
    controlPlane: opts.controlPlane,
    logger: opts.logger,
    model: opts.models?.length === 1 ? opts.models[0]!.id : '*',
    directory,
    host: opts.host,
    advertiseHost: opts.advertiseHost,
    grpcPort: opts.grpcPort,
    dataPort: opts.dataPort,
    adminAddress: admin ? new URL(admin.url).host : undefined,
    transports: opts.transports,
    tls: opts.tls,
  });
  const grpcAddress = await server.start();
  return {
    nodeId,
    store,
    server,
    grpcAddress,
    adminUrl: admin?.url,
    registry,
    async close() {
      await server!.drain();
      await store.close({ flushToDisk: opts.diskDir !== undefined });
      if (ownDirectory) await directory.close();
      await admin?.close();
    },
  };
}
