// Values that flow between the transfer engine and its users.

/** One KV block: all layers' K and V for `block_size` tokens, as opaque bytes. */
export interface KvBlock {
  /** The chained block hash, 16 hex chars. */
  readonly hash: string;
  readonly data: Uint8Array;
  /**
   * CRC-32 of `data` (see checksum.ts). A sender that already knows it passes it, sparing a pass over
   * the bytes; the receiver computes it over what arrived all the same. Blocks a receiver hands over
   * carry it, verified.
   */
  readonly checksum?: number;
}

/** How the bytes travel. gRPC always carries the control messages. */
export type TransportKind = 'tcp' | 'shm' | 'grpc';

export const TRANSPORT_KINDS: readonly TransportKind[] = ['tcp', 'shm', 'grpc'];

export function isTransportKind(s: string): s is TransportKind {
  return s === 'tcp' || s === 'shm' || s === 'grpc';
}

/** What a receiver offers; put it in the registry or fetch it with `TransferSender.describe`. */
export interface TransferAdvertisement {
  readonly protocolVersion: number;
  /** In the receiver's order of preference. */
  readonly transports: readonly TransportKind[];
  /** Equal on both ends ⇒ same host and same shm directory; '' if shm is not offered. */
  readonly shmHostId: string;
}

export interface TransferPeer {
  /** host:port of the gRPC server that hosts the receiver's KvTransfer service. */
  readonly grpcAddress: string;
  /** Known from the registry; fetched over gRPC (and cached) when absent. */
  readonly advertisement?: TransferAdvertisement;
}

export type TransferMeta = Readonly<Record<string, string>>;

/** A transfer as the receiving application sees it: whole, every checksum verified. */
export interface IncomingTransfer {
  readonly transferId: string;
  readonly transport: TransportKind;
  readonly meta: TransferMeta;
  /**
   * In the sender's order. The bytes are views into one receive slab per transfer, which is reused
   * for later transfers once onTransfer settles: copy out what you keep (the KV cache copies into
   * its block pool anyway), or call retain().
   */
  readonly blocks: readonly KvBlock[];
  readonly bytes: number;
  /** Aborted if the transfer is cancelled while the application admits it (sender gone, deadline). */
  readonly signal: AbortSignal;
  /** Keeps the blocks' memory valid after onTransfer settles (its slab is then never reused). */
  retain(): void;
}

/**
 * A transfer just announced (Begin), before any byte arrived: what a receiver's `place` hook sees to decide
 * where the blocks should land.
 */
export interface TransferOffer {
  readonly transferId: string;
  readonly meta: TransferMeta;
  readonly blocks: readonly { readonly hash: string; readonly length: number }[];
  /** The sender's host as this receiver sees it (the gRPC connection's remote address). */
  readonly peer: string;
  /** Aborts if the transfer is discarded (sender gone, deadline, receiver closed), also while placing it. */
  readonly signal: AbortSignal;
}

/** What `TransferSender.send` resolves with once the receiver acknowledged admission. */
export interface TransferReceipt {
  readonly transferId: string;
  readonly transport: TransportKind;
  readonly blocks: number;
  readonly bytes: number;
  readonly elapsedMs: number;
}

/**
 * 2: tcp transfers are pulled by the receiver from the sender's data port. 3: Begin packs the block hashes.
 * 4: a tcp receiver also says Admitted on the data connection (a sender of 3 would drop the connection).
 */
export const PROTOCOL_VERSION = 4;

/** The block hash format: 16 lowercase hex chars (as @pdserve/kv-cache makes them, and packHashes round-trips). */
export const BLOCK_HASH_PATTERN = /^[0-9a-f]{16}$/;
