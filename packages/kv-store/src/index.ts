// @pdserve/kv-store: a Mooncake-style KV block store node (tiers, two-phase puts, leases, pins, events) and
// the cluster-wide replica metadata (BlockDirectory, rendezvous placement). Its users start a node
// (startKvStoreService), talk to one (the client, also at @pdserve/kv-store/client) and place replicas.
export type { StoredModel } from './options';
export { InProcessBlockDirectory } from './directory';
export { placeReplicas } from './placement';
export * from './client-api';
export { startKvStoreService, type KvStoreService, type KvStoreServiceOptions } from './rpc/service';
