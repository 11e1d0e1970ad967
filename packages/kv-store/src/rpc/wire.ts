// Hand-kept TypeScript mirrors of proto/pdserve/v1/kvstore.proto (keepCase, longs as numbers, defaults
// on). wire.test.ts checks WIRE_FIELDS against the loaded descriptors so the two cannot drift.

export interface BeginPutRequestMsg {
  model_id: string;
  ttl_ms: number;
  /** 8 bytes per block: packHashes from @pdserve/transfer. */
  hashes: Uint8Array;
  sizes: number[];
}
export interface BeginPutResponseMsg {
  put_id: string;
  already_stored: string[];
  reserved_bytes: number;
  expires_at_ms: number;
}
export interface CommitPutRequestMsg {
  put_id: string;
}
export interface CommitPutResponseMsg {
  stored: string[];
  already_stored: string[];
}
export interface RevokePutRequestMsg {
  put_id: string;
}
export interface RevokePutResponseMsg {
  revoked: boolean;
}
export interface BlockSinkMsg {
  grpc_address: string;
  transfer_id: string;
  transport: string;
  /** The caller pulls the blocks itself (tcp), with the offer in the reply (absent: false). */
  pull?: boolean;
  /** With pull: the token the caller already asked the store's data port for (a pipelined pull); absent or empty: none. */
  pull_token?: Uint8Array;
}
export interface GetRequestMsg {
  model_id: string;
  lease_ms: number;
  sink: BlockSinkMsg | null;
  /** 8 bytes per hash: packHashes from @pdserve/transfer. */
  hashes: Uint8Array;
  /** Check memory blocks in the store too before sending (absent: false). */
  verify?: boolean;
}
export interface GetResponseMsg {
  blocks: number;
  bytes: number;
  transport: string;
  /** One byte per requested hash: TIER_CODES. */
  tiers: Uint8Array;
  /** sink.pull: the store's data port and the token to pull the found blocks under, and their lengths. */
  tcp_source: string;
  tcp_token: Uint8Array;
  block_lengths: number[];
}

/** GetResponse's tier bytes. */
export const TIER_CODES = ['', 'memory', 'disk'] as const;
export interface HashesRequestMsg {
  model_id: string;
  hashes: string[];
}
export interface TiersResponseMsg {
  tiers: string[];
}
export interface RemoveResponseMsg {
  removed: string[];
  leased: string[];
}
export interface PinRequestMsg {
  model_id: string;
  hashes: string[];
  ttl_ms: number;
}
export interface PinResponseMsg {
  pinned: string[];
  until_ms: number;
}
export type SnapshotRequestMsg = Record<string, never>;
export interface SnapshotGroupMsg {
  model_id: string;
  tier: string;
  hashes: string[];
}
export interface SnapshotResponseMsg {
  node: string;
  incarnation: string;
  seq: number;
  groups: SnapshotGroupMsg[];
}
export type StoreStatsRequestMsg = Record<string, never>;
export interface TierStatsMsg {
  blocks: number;
  bytes: number;
  used_bytes: number;
  capacity_bytes: number;
  hits: number;
  misses: number;
  evictions: number;
  read_bytes: number;
  write_bytes: number;
  corrupt_dropped: number;
}
export interface StoreStatsResponseMsg {
  memory: TierStatsMsg | null;
  disk: TierStatsMsg | null;
  active_puts: number;
  committed_puts: number;
  revoked_puts: number;
  reclaimed_puts: number;
  active_leases: number;
  active_pins: number;
  demotions: number;
  promotions: number;
  refused_transfers: number;
  blocks_sent: number;
}
export type StoreHealthRequestMsg = Record<string, never>;
export interface StoreHealthResponseMsg {
  status: string;
  node: string;
  incarnation: string;
}

/** Field names per message, for the drift test. */
export const WIRE_FIELDS: Readonly<Record<string, readonly string[]>> = {
  'pdserve.v1.BeginPutRequest': ['model_id', 'ttl_ms', 'hashes', 'sizes'],
  'pdserve.v1.BeginPutResponse': ['put_id', 'already_stored', 'reserved_bytes', 'expires_at_ms'],
  'pdserve.v1.CommitPutRequest': ['put_id'],
  'pdserve.v1.CommitPutResponse': ['stored', 'already_stored'],
  'pdserve.v1.RevokePutRequest': ['put_id'],
  'pdserve.v1.RevokePutResponse': ['revoked'],
  'pdserve.v1.BlockSink': ['grpc_address', 'transfer_id', 'transport', 'pull', 'pull_token'],
  'pdserve.v1.GetRequest': ['model_id', 'hashes', 'lease_ms', 'sink', 'verify'],
  'pdserve.v1.GetResponse': ['tiers', 'blocks', 'bytes', 'transport', 'tcp_source', 'tcp_token', 'block_lengths'],
  'pdserve.v1.HashesRequest': ['model_id', 'hashes'],
  'pdserve.v1.TiersResponse': ['tiers'],
  'pdserve.v1.RemoveResponse': ['removed', 'leased'],
  'pdserve.v1.PinRequest': ['model_id', 'hashes', 'ttl_ms'],
  'pdserve.v1.PinResponse': ['pinned', 'until_ms'],
  'pdserve.v1.SnapshotRequest': [],
  'pdserve.v1.SnapshotGroup': ['model_id', 'tier', 'hashes'],
  'pdserve.v1.SnapshotResponse': ['node', 'incarnation', 'seq', 'groups'],
  'pdserve.v1.StoreStatsRequest': [],
  'pdserve.v1.TierStatsMsg': [
    'blocks',
    'bytes',
    'used_bytes',
    'capacity_bytes',
    'hits',
    'misses',
    'evictions',
    'read_bytes',
    'write_bytes',
    'corrupt_dropped',
  ],
  'pdserve.v1.StoreStatsResponse': [
    'memory',
    'disk',
    'active_puts',
    'committed_puts',
    'revoked_puts',
    'reclaimed_puts',
    'active_leases',
    'active_pins',
    'demotions',
    'promotions',
    'refused_transfers',
    'blocks_sent',
  ],
  'pdserve.v1.StoreHealthRequest': [],
  'pdserve.v1.StoreHealthResponse': ['status', 'node', 'incarnation'],
};
