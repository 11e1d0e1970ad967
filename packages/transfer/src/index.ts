// @pdserve/transfer: moves a request's KV blocks between nodes. gRPC carries control; the bytes go
// over raw TCP, shared memory or the gRPC stream, chosen per peer pair. A receiver admits a transfer
// whole, every block checksum-verified, or not at all.
export type {
  IncomingTransfer,
  KvBlock,
  TransferAdvertisement,
  TransferMeta,
  TransferOffer,
  TransferPeer,
  TransferReceipt,
  TransportKind,
} from './types';
export { PROTOCOL_VERSION, TRANSPORT_KINDS, isTransportKind } from './types';
export { TransferError, isTransferError, type TransferErrorCode } from './errors';
export { TransferReceiver, type PullOffer, type TransferReceiverOptions } from './receiver';
export type { PreparedPull } from './tcp-pull';
/** Bytes of the token a tcp pull names (a pipelined pull's caller mints one). */
export { TOKEN_BYTES as PULL_TOKEN_BYTES } from './frame-codec';
export { DEFAULT_RECEIVER_LIMITS, type ReceiverLimits, type TransferProgress } from './receive-session';
export { TransferSender, type OfferRequest, type PullableOffer, type SendRequest, type TransferSenderOptions } from './sender';
export { MAX_MESSAGE_BYTES, TRANSFER_GRPC_OPTIONS, TRANSFER_PROTO, PROTO_ROOT } from './proto';
export { blockChecksum } from './checksum';
export { packHashes, unpackHashes } from './wire';
