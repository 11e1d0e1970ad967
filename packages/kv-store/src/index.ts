// @pdserve/kv-store: a Mooncake-style KV block store node (tiers, two-phase puts, leases, pins, events) and
// the cluster-wide replica metadata (BlockDirectory, rendezvous placement).
export { KvStore, type CloseOptions } from './store.js';
export { KV_STORE_DEFAULTS, type KvStoreOptions, type StoredModel } from './options.js';
export type {
  BeginPutOptions,
  BeginPutResult,
  CommitResult,
  FoundBlock,
  GetOptions,
  GetResult,
  KvStoreEvent,
  KvStoreStats,
  PinResult,
  PrefixResult,
  PutEntry,
  RemoveResult,
  StoreTier,
  TierStats,
} from './types.js';
export type { KvStoreListener } from './events.js';
export { GRPC_STATUS, KvStoreError, type KvStoreErrorCode } from './errors.js';
export { inspectBlock, type BlockInfo } from './inspect-block.js';
export { isBlockHash, isModelId, type BlockHash } from './keys.js';

export {
  InProcessBlockDirectory,
  everyNodeLive,
  type BlockDirectory,
  type BlockLocation,
  type DirectoryEntry,
  type NodeLiveness,
} from './directory.js';
export {
  REDIS_DIRECTORY_DEFAULTS,
  RedisBlockDirectory,
  registryLiveness,
  type RedisBlockDirectoryOptions,
  type RedisConnectOptions,
} from './redis-directory.js';
export { mirrorToDirectory, type DirectoryMirror } from './directory-sync.js';
export { placeReplicas, rendezvousWeight } from './placement.js';

// The service layer: gRPC contract, client, server and process wiring.
export { KvStoreClient, KvStoreCallError, toStoreCallError, type PutOptions, type PutReceipt } from './rpc/client.js';
export { KV_STORE_DEADLINES, KV_STORE_GRPC_OPTIONS, KV_STORE_PROTO } from './rpc/proto.js';
export type * from './rpc/wire.js';
export { KvStoreServer, type KvStoreServerOptions } from './rpc/server.js';
export { processDirectory, startKvStoreService, type KvStoreService, type KvStoreServiceOptions } from './rpc/service.js';
