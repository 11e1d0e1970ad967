// Loads the KvTransfer contract at runtime (through the plumbing every service shares) and types it with
// the hand-kept mirrors in wire.ts.
import type { ChannelOptions, MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import { PROTO_ROOT, loadProto, loadService } from '@pdserve/rpc';
import type { DescribeRequest, TransferAdvertisementMsg, TransferDown, TransferUp } from './wire';

export { PROTO_ROOT };
export const TRANSFER_PROTO = 'pdserve/v1/transfer.proto';

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

export function loadTransferPackage(): protoLoader.PackageDefinition {
  return loadProto(TRANSFER_PROTO);
}

/** The KvTransfer service definition, typed by wire.ts (which wire.test.ts keeps honest). */
export function kvTransferService(): ServiceDefinition & KvTransferMethods {
  return loadService<KvTransferMethods>(TRANSFER_PROTO, 'pdserve.v1.KvTransfer', 'Transfer');
}
