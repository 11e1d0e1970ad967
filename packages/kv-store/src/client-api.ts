// `@pdserve/kv-store/client`: a kv-store node's client and wire types, without the store itself (its disk
// tier, its Redis directory and ioredis).
export { KvStoreClient, KvStoreCallError, toStoreCallError, type PutOptions, type PutReceipt } from './rpc/client.js';
export { KV_STORE_DEADLINES, KV_STORE_GRPC_OPTIONS, KV_STORE_PROTO } from './rpc/proto.js';
export type * from './rpc/wire.js';
