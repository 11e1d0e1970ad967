// Hand-kept TypeScript mirrors of proto/pdserve/v1/transfer.proto, as @grpc/proto-loader decodes them
// with the options in proto.ts (keepCase, longs as Number, bytes as Buffer, defaults filled, the oneof
// named in `kind`). wire.test.ts checks WIRE_FIELDS against the loaded descriptors so they cannot drift.

export type DescribeRequest = Record<never, never>;

export interface TransferAdvertisementMsg {
  readonly protocol_version: number;
  readonly transports: readonly string[];
  readonly shm_host_id: string;
}

/** One block of a Begin, unpacked. */
export interface BlockDescriptor {
  readonly hash: string;
  readonly length: number;
}

export interface Begin {
  readonly protocol_version: number;
  readonly transfer_id: string;
  readonly transport: string;
  readonly meta: Readonly<Record<string, string>>;
  readonly total_bytes: number;
  readonly tcp_source: string;
  readonly tcp_token: Uint8Array;
  /** 8 bytes per block (see packHashes). */
  readonly block_hashes: Uint8Array;
  readonly block_lengths: readonly number[];
}

/** Block hashes (16 lowercase hex characters each, checked by the caller) as 8 bytes each, back to back. */
export function packHashes(hashes: readonly string[]): Buffer {
  return Buffer.from(hashes.join(''), 'hex');
}

/** The hashes packHashes packed; undefined unless `bytes` holds whole 8-byte hashes. */
export function unpackHashes(bytes: Uint8Array): string[] | undefined {
  if (bytes.byteLength % 8 !== 0) return undefined;
  const hex = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
  const out = new Array<string>(bytes.byteLength / 8);
  for (let i = 0; i < out.length; i++) out[i] = hex.slice(16 * i, 16 * i + 16);
  return out;
}

/** A Begin's blocks for these blocks. */
export function packBlocks(
  blocks: readonly { readonly hash: string; readonly data: Uint8Array }[],
): Pick<Begin, 'block_hashes' | 'block_lengths'> {
  return { block_hashes: packHashes(blocks.map((b) => b.hash)), block_lengths: blocks.map((b) => b.data.byteLength) };
}

export interface BlockChunk {
  readonly block_index: number;
  readonly offset: number;
  readonly data: Uint8Array;
  readonly checksum: number;
}

export interface Chunks {
  readonly chunks: readonly BlockChunk[];
}

export interface ShmSegment {
  readonly path: string;
  readonly size: number;
  readonly checksums: readonly number[];
}

export interface Commit {
  readonly block_count: number;
  readonly shm: ShmSegment | null;
}

export type TransferUp =
  | { readonly kind: 'begin'; readonly begin: Begin }
  | { readonly kind: 'chunks'; readonly chunks: Chunks }
  | { readonly kind: 'commit'; readonly commit: Commit };

export type Ready = Record<never, never>;

export interface Admitted {
  readonly bytes: number;
}

export type TransferDown = { readonly kind: 'ready'; readonly ready: Ready } | { readonly kind: 'admitted'; readonly admitted: Admitted };

// ---- the drift check's input -------------------------------------------------------------------

type AllKeys<T> = T extends unknown ? keyof T : never;
/** Field names of a message type: every key of every union member, less the oneof's name. */
type WireKeys<T> = Exclude<AllKeys<T>, 'kind'>;
type Complete<T, K extends readonly PropertyKey[]> = [Exclude<WireKeys<T>, K[number]>] extends [never]
  ? unknown
  : { missing: Exclude<WireKeys<T>, K[number]> };

/** T's field names; does not compile if the list misses or invents one. */
function fieldsOf<T>() {
  return <const K extends readonly WireKeys<T>[]>(keys: K & Complete<T, K>): readonly string[] => keys.map(String);
}

/** Fully qualified message name → the field names its hand-kept type declares. */
export const WIRE_FIELDS: Readonly<Record<string, readonly string[]>> = {
  'pdserve.v1.DescribeRequest': fieldsOf<DescribeRequest>()([]),
  'pdserve.v1.TransferAdvertisement': fieldsOf<TransferAdvertisementMsg>()(['protocol_version', 'transports', 'shm_host_id']),
  'pdserve.v1.Begin': fieldsOf<Begin>()([
    'protocol_version',
    'transfer_id',
    'transport',
    'meta',
    'total_bytes',
    'tcp_source',
    'tcp_token',
    'block_hashes',
    'block_lengths',
  ]),
  'pdserve.v1.BlockChunk': fieldsOf<BlockChunk>()(['block_index', 'offset', 'data', 'checksum']),
  'pdserve.v1.Chunks': fieldsOf<Chunks>()(['chunks']),
  'pdserve.v1.ShmSegment': fieldsOf<ShmSegment>()(['path', 'size', 'checksums']),
  'pdserve.v1.Commit': fieldsOf<Commit>()(['block_count', 'shm']),
  'pdserve.v1.TransferUp': fieldsOf<TransferUp>()(['begin', 'chunks', 'commit']),
  'pdserve.v1.Ready': fieldsOf<Ready>()([]),
  'pdserve.v1.Admitted': fieldsOf<Admitted>()(['bytes']),
  'pdserve.v1.TransferDown': fieldsOf<TransferDown>()(['ready', 'admitted']),
};

/** Message name → the name of its oneof, for the messages that have one. */
export const WIRE_ONEOFS: Readonly<Record<string, string>> = {
  'pdserve.v1.TransferUp': 'kind',
  'pdserve.v1.TransferDown': 'kind',
};
