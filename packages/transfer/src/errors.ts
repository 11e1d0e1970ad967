// One error type for every way a transfer fails, with a code per failure class.
import { Metadata, status, type ServiceError, type StatusObject } from '@grpc/grpc-js';

export type TransferErrorCode =
  /** The sender's AbortSignal fired, or the receiver was closed. */
  | 'ABORTED'
  | 'DEADLINE_EXCEEDED'
  /** A block's bytes did not match its checksum. */
  | 'CHECKSUM_MISMATCH'
  /** A data connection or the control stream broke before the transfer was admitted. */
  | 'CONNECTION_LOST'
  /** The receiving application refused the transfer (its onTransfer threw). */
  | 'REFUSED'
  /** The receiver is at its limit of in-flight bytes or transfers; retry later or elsewhere. */
  | 'RESOURCE_EXHAUSTED'
  /** The peer cannot be reached, or does not offer the requested transport. */
  | 'UNAVAILABLE'
  /** The request is malformed (bad hash, empty data, too large, unknown transport). */
  | 'INVALID_ARGUMENT'
  /** The peer broke the protocol (unexpected message, frame or size). */
  | 'PROTOCOL';

const CODES: ReadonlySet<string> = new Set<TransferErrorCode>([
  'ABORTED',
  'DEADLINE_EXCEEDED',
  'CHECKSUM_MISMATCH',
  'CONNECTION_LOST',
  'REFUSED',
  'RESOURCE_EXHAUSTED',
  'UNAVAILABLE',
  'INVALID_ARGUMENT',
  'PROTOCOL',
]);

const GRPC_STATUS: Readonly<Record<TransferErrorCode, status>> = {
  ABORTED: status.CANCELLED,
  DEADLINE_EXCEEDED: status.DEADLINE_EXCEEDED,
  CHECKSUM_MISMATCH: status.DATA_LOSS,
  CONNECTION_LOST: status.UNAVAILABLE,
  REFUSED: status.FAILED_PRECONDITION,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  UNAVAILABLE: status.UNAVAILABLE,
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  PROTOCOL: status.INTERNAL,
};

/** The trailer that carries the exact code across gRPC. */
export const ERROR_TRAILER = 'pdserve-transfer-error';

export class TransferError extends Error {
  override readonly name = 'TransferError';
  constructor(
    readonly code: TransferErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** Whether sending the same blocks again (here or to another peer) may succeed. */
  get retryable(): boolean {
    return (
      this.code === 'CONNECTION_LOST' ||
      this.code === 'RESOURCE_EXHAUSTED' ||
      this.code === 'UNAVAILABLE' ||
      this.code === 'CHECKSUM_MISMATCH'
    );
  }
}

export function isTransferError(e: unknown): e is TransferError {
  return e instanceof TransferError;
}

/** Any thrown value as a TransferError; `fallback` classifies values that are not one already. */
export function asTransferError(e: unknown, fallback: TransferErrorCode): TransferError {
  if (e instanceof TransferError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new TransferError(fallback, message, { cause: e });
}

/** The status a receiver ends a Transfer call with. */
export function toGrpcStatus(e: TransferError): Partial<StatusObject> {
  const metadata = new Metadata();
  metadata.set(ERROR_TRAILER, e.code);
  return { code: GRPC_STATUS[e.code], details: e.message, metadata };
}

/** A failed gRPC call, as seen by the sender, as a TransferError. */
export function fromGrpcError(e: ServiceError): TransferError {
  const trailer = e.metadata?.get(ERROR_TRAILER)[0];
  const details = e.details || e.message;
  if (typeof trailer === 'string' && CODES.has(trailer)) {
    return new TransferError(trailer as TransferErrorCode, `receiver: ${details}`, { cause: e });
  }
  switch (e.code) {
    case status.DEADLINE_EXCEEDED:
      return new TransferError('DEADLINE_EXCEEDED', `deadline exceeded: ${details}`, { cause: e });
    case status.CANCELLED: // not by us: our own cancel leaves its reason on the transfer's signal
      return new TransferError('CONNECTION_LOST', `receiver cancelled the call: ${details}`, { cause: e });
    case status.RESOURCE_EXHAUSTED:
      return new TransferError('RESOURCE_EXHAUSTED', details, { cause: e });
    case status.UNAVAILABLE:
      return new TransferError('CONNECTION_LOST', `control stream lost: ${details}`, { cause: e });
    case status.UNIMPLEMENTED:
      return new TransferError('UNAVAILABLE', `peer has no KvTransfer service: ${details}`, { cause: e });
    default:
      return new TransferError('PROTOCOL', `gRPC ${status[e.code] ?? e.code}: ${details}`, { cause: e });
  }
}
