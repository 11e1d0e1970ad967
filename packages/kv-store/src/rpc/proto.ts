// Loads the KvStore contract at runtime and types it with the hand-kept mirrors in wire.ts.
import { fileURLToPath } from 'node:url';
import type { ChannelOptions, MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type * as W from './wire.js';

export const PROTO_ROOT = fileURLToPath(new URL('../../../../proto', import.meta.url));
export const KV_STORE_PROTO = 'pdserve/v1/kvstore.proto';

const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
};

/** Control messages only (block bytes go through the transfer engine); a 4096-hash batch is ~100 KB. */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

export const KV_STORE_GRPC_OPTIONS: ChannelOptions = {
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
};

/** Deadlines of the calls, in ms. */
export const KV_STORE_DEADLINES = { control: 5_000, get: 30_000, snapshot: 10_000 } as const;

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

let loaded: protoLoader.PackageDefinition | null = null;

export function loadKvStorePackage(): protoLoader.PackageDefinition {
  loaded ??= protoLoader.loadSync(KV_STORE_PROTO, LOADER_OPTIONS);
  return loaded;
}

export function kvStoreService(): ServiceDefinition & KvStoreMethods {
  const def = loadKvStorePackage()['pdserve.v1.KvStore'];
  if (def === undefined || !('BeginPut' in def)) throw new Error(`${KV_STORE_PROTO} has no pdserve.v1.KvStore service`);
  // The one cast from proto-loader's untyped definition to the hand-kept message types.
  return def as unknown as ServiceDefinition & KvStoreMethods;
}
