// Every tunable of the store: a name, a default, a unit and a sentence.
import type { KvLayout } from '@pdserve/kv-cache';
import { silentLogger, type Logger } from '@pdserve/control-plane';
import { invalidArgument } from './errors';
import { checkModelId } from './keys';

/** A model a kv-store node serves (not the model config of @pdserve/model's ModelSpec). */
export interface StoredModel {
  readonly id: string;
  /** When given, every block put for this model must have exactly this shape. */
  readonly layout?: KvLayout;
}

export interface KvStoreOptions {
  /** Budget of the memory tier: stored plus reserved block bytes never exceed it, in bytes. */
  readonly memoryBytes: number;
  /** Folder of the disk tier; without it there is no disk tier and evicted blocks are dropped. */
  readonly diskDir?: string;
  /** Budget of the disk tier: files (headers included) plus files being written, in bytes. */
  readonly diskBytes?: number;
  /**
   * The models this store serves. When given, any other model id is refused (not_found); when omitted, any
   * well-formed model id is accepted and simply becomes part of the block key.
   */
  readonly models?: readonly StoredModel[];
  /** Largest encoded block accepted, in bytes. A fp32 block of a 70B model at 16 tokens is about 10 MiB. */
  readonly maxBlockBytes?: number;
  /** Hashes per call, for every batch call. Bounds the work and the message size of one request. */
  readonly maxBatchBlocks?: number;
  /** Fraction of memoryBytes above which background eviction starts. */
  readonly highWatermark?: number;
  /** Fraction of memoryBytes background eviction brings usage down to. */
  readonly lowWatermark?: number;
  /** Default time a put may stay uncommitted before the sweeper reclaims it, in ms. */
  readonly putTtlMs?: number;
  /** Longest ttl a put may ask for, in ms. */
  readonly maxPutTtlMs?: number;
  /** Default read lease of get(), in ms (Mooncake's default is 5 s). */
  readonly leaseMs?: number;
  /** Longest read lease a get may ask for, in ms: a lease blocks eviction, so it must stay short. */
  readonly maxLeaseMs?: number;
  /** Longest soft pin, in ms. */
  readonly maxPinMs?: number;
  /**
   * Whether a put that cannot otherwise make room may evict soft-pinned blocks (LRU among them). When
   * false, such a put fails with resource_exhausted. Background (watermark) eviction never touches pins.
   */
  readonly evictPinnedWhenFull?: boolean;
  /** Whether a disk hit is copied back into memory, when that keeps memory under the high watermark. */
  readonly promoteOnRead?: boolean;
  /** How often expired puts, leases and pins are swept, in ms. */
  readonly sweepIntervalMs?: number;
  /** fsync each disk file before its rename. Off: a file torn by a power loss fails its checksum and is discarded. */
  readonly diskFsync?: boolean;
  /** Read and checksum every disk file at open (else only headers and lengths; bodies are checked on read). */
  readonly verifyDiskOnOpen?: boolean;
  readonly logger?: Logger;
  /** Epoch milliseconds; replaceable for tests. */
  readonly clock?: () => number;
}

export const KV_STORE_DEFAULTS = {
  diskBytes: 0,
  maxBlockBytes: 32 * 1024 * 1024,
  maxBatchBlocks: 4096,
  highWatermark: 0.95,
  lowWatermark: 0.85,
  putTtlMs: 30_000,
  maxPutTtlMs: 10 * 60_000,
  leaseMs: 5_000,
  maxLeaseMs: 60_000,
  maxPinMs: 24 * 60 * 60_000,
  evictPinnedWhenFull: true,
  promoteOnRead: true,
  sweepIntervalMs: 1_000,
  diskFsync: false,
  verifyDiskOnOpen: true,
} as const;

type Defaulted = typeof KV_STORE_DEFAULTS;
export type KvStoreConfig = { readonly [K in keyof Defaulted]: Defaulted[K] extends boolean ? boolean : number } & {
  readonly memoryBytes: number;
  readonly diskDir: string | undefined;
  /** Model id → expected layout (undefined: any shape); undefined map: any model. */
  readonly models: ReadonlyMap<string, KvLayout | undefined> | undefined;
  readonly logger: Logger;
  readonly clock: () => number;
};

export function resolveOptions(options: KvStoreOptions): KvStoreConfig {
  const c: KvStoreConfig = {
    ...KV_STORE_DEFAULTS,
    ...definedOnly(options),
    memoryBytes: options.memoryBytes,
    diskDir: options.diskDir,
    models: options.models === undefined ? undefined : modelMap(options.models),
    logger: options.logger ?? silentLogger,
    clock: options.clock ?? Date.now,
  };
  positiveInteger('memoryBytes', c.memoryBytes);
  if (!Number.isInteger(c.diskBytes) || c.diskBytes < 0) throw invalidArgument(`diskBytes must be a whole number >= 0, got ${c.diskBytes}`);
  if (c.diskDir !== undefined && c.diskBytes === 0) throw invalidArgument('diskDir is set but diskBytes is 0');
  for (const name of [
    'maxBlockBytes',
    'maxBatchBlocks',
    'putTtlMs',
    'maxPutTtlMs',
    'leaseMs',
    'maxLeaseMs',
    'maxPinMs',
    'sweepIntervalMs',
  ] as const) {
    positiveInteger(name, c[name]);
  }
  if (!(c.lowWatermark > 0 && c.lowWatermark <= c.highWatermark && c.highWatermark <= 1)) {
    throw invalidArgument(`watermarks need 0 < low <= high <= 1, got low ${c.lowWatermark}, high ${c.highWatermark}`);
  }
  return c;
}

function modelMap(models: readonly StoredModel[]): Map<string, KvLayout | undefined> {
  const map = new Map<string, KvLayout | undefined>();
  for (const m of models) {
    checkModelId(m.id);
    map.set(m.id, m.layout);
  }
  return map;
}

function positiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) throw invalidArgument(`${name} must be a whole number >= 1, got ${value}`);
}

/** Drops keys whose value is undefined, so that they do not override defaults when spread. */
function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
