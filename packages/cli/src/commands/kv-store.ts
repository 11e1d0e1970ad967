// The kv-store service: one node of the cluster's KV block store (memory tier, optional disk tier).
import { loadModelSpec } from '@pdserve/model';
import { TRANSPORT_KINDS } from '@pdserve/transfer';
import { startKvStoreService, type StoredModel } from '@pdserve/kv-store';
import { ENGINE_DEFAULTS } from '@pdserve/engine';
import { BYTES, int, listOf, PORT, UsageError, type CommandSpec, type Flags, type FlagSpec } from '../args';
import { serviceLogger } from '../logging';
import { COMMON_FLAGS, controlPlaneOf, listenOptionsOf, untilSignal } from './cluster';

const KV_STORE_FLAGS = {
  'instance-id': { type: 'string', help: 'stable node id in the registry and the block directory (default: kv-store + random suffix)' },
  'grpc-port': { type: 'string', help: 'gRPC port (0 = any free port)', default: '0', value: PORT },
  'data-port': {
    type: 'string',
    help: 'TCP data-plane port workers pull fetched blocks from (0 = any free port)',
    default: '0',
    value: PORT,
  },
  transports: {
    type: 'string',
    help: 'transports puts may arrive over, in preference order',
    default: 'tcp,shm,grpc',
    value: listOf(...TRANSPORT_KINDS),
  },
  'memory-bytes': { type: 'string', help: 'memory tier budget (e.g. 1G)', default: '1G', value: BYTES },
  'disk-bytes': { type: 'string', help: 'disk tier budget (0 = no disk tier)', default: '0', value: BYTES },
  'disk-dir': { type: 'string', help: 'folder of the disk tier (rebuilt from its files on restart)' },
  'block-size': {
    type: 'string',
    help: 'tokens per KV block, to check block shapes with --model',
    default: String(ENGINE_DEFAULTS.blockSize),
    value: int(1),
  },
} as const satisfies Record<string, FlagSpec>;

/** With --model, blocks must have that model's shape; with only --served-model-name, that id; else any. */
function modelsOf(f: Flags): StoredModel[] | undefined {
  const dir = f.str('model');
  const id = f.str('served-model-name') ?? dir?.split('/').filter(Boolean).pop();
  if (id === undefined) return undefined;
  if (dir === undefined) return [{ id }];
  const spec = loadModelSpec(dir, id);
  return [
    {
      id,
      layout: {
        numLayers: spec.numLayers,
        numKvHeads: spec.numKvHeads,
        headDim: spec.headDim,
        blockSize: f.int('block-size', 1) ?? ENGINE_DEFAULTS.blockSize,
      },
    },
  ];
}

export const kvStore: CommandSpec = {
  name: 'kv-store',
  summary: 'Run a kv-store node: the cluster-wide KV block store workers offload to and prefetch from.',
  usage: 'kv-store [--redis URL --nats URL] [--grpc-port N] [--memory-bytes 1G] [--disk-bytes 10G --disk-dir DIR] [--served-model-name ID]',
  flags: { ...COMMON_FLAGS, ...KV_STORE_FLAGS },
  check(f) {
    if ((f.bytes('disk-bytes') ?? 0) > 0 && !f.str('disk-dir'))
      throw new UsageError('--disk-bytes needs --disk-dir (the folder of the disk tier)');
  },
  async run(f) {
    const logger = serviceLogger('kv-store', f.str('log-level'), f.str('log-format'));
    const cp = await controlPlaneOf(f, 'kv-store');
    const diskBytes = f.bytes('disk-bytes') ?? 0;
    const s = await startKvStoreService({
      nodeId: f.str('instance-id'),
      controlPlane: cp,
      logger: logger,
      memoryBytes: f.bytes('memory-bytes')!,
      diskBytes,
      diskDir: diskBytes > 0 ? f.str('disk-dir') : undefined,
      models: modelsOf(f),
      redisUrl: f.str('redis'),
      ...listenOptionsOf(f),
    });
    logger.info(
      {
        nodeId: s.nodeId,
        grpc: s.grpcAddress,
        admin: s.adminUrl,
        controlPlane: cp.mode,
        directory: f.str('redis') ? 'redis' : 'in-process',
      },
      'kv-store ready',
    );
    const sig = await untilSignal();
    logger.info({ signal: sig }, 'stopping');
    await s.close();
    await cp.close();
  },
};
