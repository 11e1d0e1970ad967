// Loads the KvStore contract at runtime and types it with the hand-kept mirrors in wire.ts.
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import { CONTROL_GRPC_OPTIONS, MAX_CONTROL_MESSAGE_BYTES, PROTO_ROOT, loadProto, loadService } from '@pdserve/rpc';
import type * as W from './wire';

export { PROTO_ROOT };
export const KV_STORE_PROTO = 'pdserve/v1/kvstore.proto';
/** Control messages only (block bytes go through the transfer engine); a 4096-hash batch is ~100 KB. */
export const MAX_MESSAGE_BYTES = MAX_CONTROL_MESSAGE_BYTES;
export const KV_STORE_GRPC_OPTIONS = CONTROL_GRPC_OPTIONS;

/** Deadlines of the calls, in ms. */
export const KV_STORE_DEADLINES = { control: 5_000, get: 30_000, snapshot: 10_000 } as const;

/**
 * Transfer meta of a put's blocks: the put they belong to, and (`'1'`) whether the store commits the put as
 * it admits the transfer — every block in and verified — instead of waiting for CommitPut. Or, instead of
 * a put id, `put_begin` naming the model: the transfer's Begin begins the put (as BeginPut would, for its
 * blocks, with `put_ttl_ms`), and its admission commits it — a put in one round trip.
 */
export const PUT_ID_META = 'put_id';
export const PUT_COMMIT_META = 'put_commit';
export const PUT_BEGIN_META = 'put_begin';
export const PUT_TTL_META = 'put_ttl_ms';

export interface KvStoreMethods {
  readonly BeginPut: MethodDefinition<W.BeginPutRequestMsg, W.BeginPutResponseMsg>;
  readonly CommitPut: MethodDefinition<W.CommitPutRequestMsg, W.CommitPutResponseMsg>;
  readonly RevokePut: MethodDefinition<W.RevokePutRequestMsg, W.RevokePutResponseMsg>;
  readonly Get: MethodDefinition<W.GetRequestMsg, W.GetResponseMsg>;
  readonly Exists: MethodDefinition<W.HashesRequestMsg, W.TiersResponseMsg>;
  readonly LongestPrefix: MethodDefinition<W.HashesRequestMsg, W.TiersResponseMsg>;
  readonly Remove: MethodDefinition<W.HashesRequestMsg, W.RemoveResponseMsg>;
  readonly Pin: MethodDefinition<W.PinRequestMsg, W.PinResponseMsg>;
  readonly Snapshot: MethodDefinition<W.SnapshotRequestMsg, W.SnapshotResponseMsg>;
  readonly Stats: MethodDefinition<W.StoreStatsRequestMsg, W.StoreStatsResponseMsg>;
  readonly Health: MethodDefinition<W.StoreHealthRequestMsg, W.StoreHealthResponseMsg>;
}

export function loadKvStorePackage(): protoLoader.PackageDefinition {
  return loadProto(KV_STORE_PROTO);
}

export function kvStoreService(): ServiceDefinition & KvStoreMethods {
  return loadService<KvStoreMethods>(KV_STORE_PROTO, 'pdserve.v1.KvStore', 'BeginPut');
}
