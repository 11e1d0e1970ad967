// Loads the KvTransfer contract at runtime and types it with the hand-kept mirrors in wire.ts.
import { fileURLToPath } from 'node:url';
import type { ChannelOptions, MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { DescribeRequest, TransferAdvertisementMsg, TransferDown, TransferUp } from './wire.js';

export const PROTO_ROOT = fileURLToPath(new URL('../../../proto', import.meta.url));
export const TRANSFER_PROTO = 'pdserve/v1/transfer.proto';

/** Field names as in the .proto; 64-bit fields as JS numbers (all are byte counts < 2^53). */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  bytes: Buffer,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
};

/** Largest gRPC message either side sends or accepts: grpc-transport chunks stay well below it. */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/** Options for every channel and server that carries KvTransfer. */
export const TRANSFER_GRPC_OPTIONS: ChannelOptions = {
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
};

export interface KvTransferMethods {
  readonly Describe: MethodDefinition<DescribeRequest, TransferAdvertisementMsg>;
  readonly Transfer: MethodDefinition<TransferUp, TransferDown>;
}

let loaded: protoLoader.PackageDefinition | null = null;

export function loadTransferPackage(): protoLoader.PackageDefinition {
  loaded ??= protoLoader.loadSync(TRANSFER_PROTO, LOADER_OPTIONS);
  return loaded;
}

/** The KvTransfer service definition, typed by wire.ts (which wire.test.ts keeps honest). */
export function kvTransferService(): ServiceDefinition & KvTransferMethods {
  const def = loadTransferPackage()['pdserve.v1.KvTransfer'];
  if (def === undefined || !('Transfer' in def) || !('Describe' in def)) {
    throw new Error(`${TRANSFER_PROTO} has no pdserve.v1.KvTransfer service`);
  }
  // The one cast from proto-loader's untyped definition to the hand-kept message types.
  return def as unknown as ServiceDefinition & KvTransferMethods;
}
