// The values that flow through the control plane: service records, KV events, load reports.

export type ServiceRole = 'gateway' | 'prefill' | 'decode' | 'mixed' | 'kv-store';
export const SERVICE_ROLES: readonly ServiceRole[] = ['gateway', 'prefill', 'decode', 'mixed', 'kv-store'];

export interface ServiceCapacity {
  readonly totalBlocks: number;
  /** Tokens per KV block. */
  readonly blockSize: number;
  readonly maxNumSeqs: number;
}

/** What an instance advertises in the registry. `id` is stable across restarts; `incarnation` is not. */
export interface ServiceRecord {
  readonly id: string;
  readonly role: ServiceRole;
  readonly grpcAddress: string;
  readonly adminAddress: string;
  readonly model: string;
  readonly capacity: ServiceCapacity;
  /** Opaque advertisement of the instance's transfer engine (transports, data-plane address, …). */
  readonly transfer?: unknown;
  /** Unique per process start; a new incarnation means the old one's KV cache is gone. */
  readonly incarnation: string;
  /** Epoch milliseconds. */
  readonly startedAt: number;
}

export type KvTier = 'device' | 'host' | 'disk' | 'store';
export const KV_TIERS: readonly KvTier[] = ['device', 'host', 'disk', 'store'];

/** A block hash: 16 lowercase hex characters (64 bits). */
export type BlockHash = string;

export type KvEvent =
  | { readonly kind: 'stored'; readonly hashes: readonly BlockHash[]; readonly tier: KvTier }
  | { readonly kind: 'removed'; readonly hashes: readonly BlockHash[]; readonly tier: KvTier }
  | { readonly kind: 'cleared' };

/** KV events from one worker incarnation; `seq` grows by one per batch so receivers can detect gaps. */
export interface KvEventBatch {
  readonly worker: string;
  readonly incarnation: string;
  readonly seq: number;
  readonly events: readonly KvEvent[];
}

export interface LoadReport {
  readonly worker: string;
  /** Sequences in the running batch. */
  readonly running: number;
  /** Sequences admitted but waiting to run. */
  readonly waiting: number;
  readonly freeBlocks: number;
  readonly totalBlocks: number;
  /** Prompt tokens still to prefill across waiting and running sequences. */
  readonly queuedPrefillTokens: number;
  /** Epoch milliseconds when the report was taken. */
  readonly ts: number;
}
