// `@pdserve/kv-store/client`: a kv-store node's client and wire types, without the store itself (its disk
// tier, its Redis directory and ioredis).
export { KvStoreClient, KvStoreCallError, type PullingReceiver, type PutOptions, type PutReceipt } from './rpc/client';
export type { StoreStatsResponseMsg, TierStatsMsg } from './rpc/wire';
