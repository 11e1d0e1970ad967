// @pdserve/transfer: moves a request's KV blocks between nodes. gRPC carries control; the bytes go
// over raw TCP, shared memory or the gRPC stream, chosen per peer pair. A receiver admits a transfer
// whole, every block checksum-verified, or not at all.
export type {
  IncomingTransfer, KvBlock, TransferAdvertisement, TransferMeta, TransferOffer, TransferPeer, TransferReceipt, TransportKind,
} from './types.js';
export { PROTOCOL_VERSION, TRANSPORT_KINDS, isTransportKind } from './types.js';
export { TransferError, isTransferError, type TransferErrorCode } from './errors.js';
export { TransferReceiver, type TransferReceiverOptions } from './receiver.js';
export { DEFAULT_RECEIVER_LIMITS, type ReceiverLimits, type TransferProgress } from './receive-session.js';
export { TransferSender, type SendRequest, type TransferSenderOptions } from './sender.js';
export { MAX_MESSAGE_BYTES, TRANSFER_GRPC_OPTIONS, TRANSFER_PROTO, PROTO_ROOT } from './proto.js';
export { blockChecksum } from './checksum.js';
export { packHashes, unpackHashes } from './wire.js';
