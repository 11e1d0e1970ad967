// BlockDirectory over Redis (ioredis). One hash per block, node → tier:
//   pdserve:<cluster>:kvdir:<modelId>:<hash>   HASH  { <node>: "memory" | "disk" }
//   pdserve:<cluster>:kvdir-node:<node>        SET   { "<modelId>:<hash>", … }  (what dropNode deletes)
// Both expire entryTtlMs after the last record touching them. A dead node's entries are left out of locate()
// answers (and deleted) as soon as its liveness check fails; every batch is one pipelined round trip per chunk.
import { Redis, type ChainableCommander } from 'ioredis';
import { instanceKey, silentLogger, isToken, type Logger } from '@pdserve/control-plane';
import {
  checkEntries,
  checkHashes,
  checkNode,
  sortLocations,
  type BlockDirectory,
  type BlockLocation,
  type DirectoryEntry,
  type NodeLiveness,
} from './directory';
import { KvStoreError, invalidArgument } from './errors';
import type { BlockHash } from './keys';
import type { StoreTier } from './types';

export interface RedisBlockDirectoryOptions {
  /** Cluster name, the second segment of every key. */
  readonly cluster: string;
  /** Which nodes are alive. Default: the node has a record in the service registry (registryLiveness). */
  readonly liveness?: NodeLiveness;
  /** A block's key and a node's set expire this long after the last record touching them, in ms. A backstop
   * for entries no liveness check ever meets; a store re-records its blocks on restart. */
  readonly entryTtlMs?: number;
  /** Blocks per pipelined round trip. */
  readonly pipelineBlocks?: number;
}

export interface RedisConnectOptions {
  /** How long connect() waits for Redis, in ms. */
  readonly connectTimeoutMs?: number;
  /** A command not answered within this long fails, in ms. */
  readonly commandTimeoutMs?: number;
  readonly logger?: Logger;
}

export const REDIS_DIRECTORY_DEFAULTS = {
  entryTtlMs: 24 * 60 * 60_000,
  pipelineBlocks: 512,
  connectTimeoutMs: 5_000,
  commandTimeoutMs: 2_000,
} as const;

const TIERS: ReadonlySet<string> = new Set<StoreTier>(['memory', 'disk']);

/** A node is alive while its service-registry record exists (pdserve:<cluster>:instances:<node>, a TTL lease). */
export function registryLiveness(redis: Redis, cluster: string): NodeLiveness {
  return {
    live: async (nodes) => {
      if (nodes.length === 0) return new Set();
      const pipeline = redis.pipeline();
      for (const node of nodes) pipeline.exists(instanceKey(cluster, node));
      const replies = await run(pipeline);
      return new Set(nodes.filter((_, i) => replies[i] === 1));
    },
  };
}

export class RedisBlockDirectory implements BlockDirectory {
  private readonly liveness: NodeLiveness;
  private readonly entryTtlMs: number;
  private readonly chunk: number;
  private readonly prefix: string;
  private readonly nodePrefix: string;

  /** Uses `redis` without owning it unless `ownsClient` (then close() quits it). */
  constructor(
    private readonly redis: Redis,
    options: RedisBlockDirectoryOptions,
    private readonly ownsClient = false,
  ) {
    if (!isToken(options.cluster))
      throw invalidArgument(`cluster must be 1-128 characters of [A-Za-z0-9_-], got ${JSON.stringify(options.cluster)}`);
    this.liveness = options.liveness ?? registryLiveness(redis, options.cluster);
    this.entryTtlMs = options.entryTtlMs ?? REDIS_DIRECTORY_DEFAULTS.entryTtlMs;
    this.chunk = options.pipelineBlocks ?? REDIS_DIRECTORY_DEFAULTS.pipelineBlocks;
    if (!(Number.isInteger(this.entryTtlMs) && this.entryTtlMs >= 1))
      throw invalidArgument(`entryTtlMs must be >= 1, got ${this.entryTtlMs}`);
    if (!(Number.isInteger(this.chunk) && this.chunk >= 1)) throw invalidArgument(`pipelineBlocks must be >= 1, got ${this.chunk}`);
    this.prefix = `pdserve:${options.cluster}:kvdir:`;
    this.nodePrefix = `pdserve:${options.cluster}:kvdir-node:`;
  }

  /** Connects its own client to `url` (closed by close()). */
  static async connect(url: string, options: RedisBlockDirectoryOptions & RedisConnectOptions): Promise<RedisBlockDirectory> {
    const logger = options.logger ?? silentLogger;
    const redis = new Redis(url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: options.connectTimeoutMs ?? REDIS_DIRECTORY_DEFAULTS.connectTimeoutMs,
      commandTimeout: options.commandTimeoutMs ?? REDIS_DIRECTORY_DEFAULTS.commandTimeoutMs,
    });
    let down = false;
    // Without an 'error' listener ioredis reports connection errors as unhandled; log each outage once.
    redis.on('error', (error: unknown) => {
      if (!down) logger.warn({ err: String(error) }, 'kv-store directory: redis connection error; reconnecting');
      down = true;
    });
    redis.on('ready', () => (down = false));
    try {
      await redis.connect();
    } catch (error) {
      redis.disconnect();
      throw new KvStoreError('unavailable', `kv-store directory cannot connect to Redis: ${String(error)}`);
    }
    return new RedisBlockDirectory(redis, options, true);
  }

  async record(node: string, modelId: string, entries: readonly DirectoryEntry[]): Promise<void> {
    checkNode(node);
    checkEntries(modelId, entries);
    const nodeKey = this.nodeKey(node);
    for (let i = 0; i < entries.length; i += this.chunk) {
      const pipeline = this.redis.pipeline();
      for (const { hash, tier } of entries.slice(i, i + this.chunk)) {
        const key = this.blockKey(modelId, hash);
        pipeline.hset(key, node, tier).pexpire(key, this.entryTtlMs).sadd(nodeKey, member(modelId, hash));
      }
      pipeline.pexpire(nodeKey, this.entryTtlMs);
      await run(pipeline);
    }
  }

  async forget(node: string, modelId: string, hashes: readonly BlockHash[]): Promise<void> {
    checkNode(node);
    checkHashes(modelId, hashes);
    const nodeKey = this.nodeKey(node);
    for (let i = 0; i < hashes.length; i += this.chunk) {
      const pipeline = this.redis.pipeline();
      for (const hash of hashes.slice(i, i + this.chunk)) {
        pipeline.hdel(this.blockKey(modelId, hash), node).srem(nodeKey, member(modelId, hash));
      }
      await run(pipeline);
    }
  }

  async locate(modelId: string, hashes: readonly BlockHash[]): Promise<BlockLocation[][]> {
    checkHashes(modelId, hashes);
    const holders: Record<string, string>[] = [];
    for (let i = 0; i < hashes.length; i += this.chunk) {
      const pipeline = this.redis.pipeline();
      for (const hash of hashes.slice(i, i + this.chunk)) pipeline.hgetall(this.blockKey(modelId, hash));
      for (const reply of await run(pipeline)) holders.push(isStringRecord(reply) ? reply : {});
    }
    const nodes = [...new Set(holders.flatMap((h) => Object.keys(h)))];
    const live = await this.liveness.live(nodes);
    const dead = this.redis.pipeline();
    let deadCount = 0;
    const answer = holders.map((h, i) => {
      const locations: BlockLocation[] = [];
      for (const [node, tier] of Object.entries(h)) {
        if (!live.has(node)) {
          dead.hdel(this.blockKey(modelId, hashes[i]!), node);
          deadCount += 1;
        } else if (TIERS.has(tier)) {
          locations.push({ node, tier: tier as StoreTier });
        }
      }
      return sortLocations(locations);
    });
    if (deadCount > 0) await run(dead);
    return answer;
  }

  async dropNode(node: string): Promise<void> {
    checkNode(node);
    const nodeKey = this.nodeKey(node);
    let cursor = '0';
    do {
      const [next, members] = await this.redis.sscan(nodeKey, cursor, 'COUNT', this.chunk);
      if (members.length > 0) {
        const pipeline = this.redis.pipeline();
        for (const m of members) pipeline.hdel(`${this.prefix}${m}`, node);
        await run(pipeline);
      }
      cursor = next;
    } while (cursor !== '0');
    await this.redis.del(nodeKey);
  }

  async close(): Promise<void> {
    if (!this.ownsClient) return;
    try {
      await this.redis.quit();
    } catch {
      this.redis.disconnect(); // Redis is down: just drop the socket
    }
  }

  private blockKey(modelId: string, hash: BlockHash): string {
    return `${this.prefix}${member(modelId, hash)}`;
  }

  private nodeKey(node: string): string {
    return `${this.nodePrefix}${node}`;
  }
}

/** The part of a block key after the prefix; the hash has a fixed length, so a ':' in a model id is harmless. */
function member(modelId: string, hash: BlockHash): string {
  return `${modelId}:${hash}`;
}

async function run(pipeline: ChainableCommander): Promise<unknown[]> {
  const replies = await pipeline.exec();
  if (replies === null) throw new KvStoreError('unavailable', 'kv-store directory: redis pipeline was discarded');
  return replies.map(([error, reply]) => {
    if (error !== null) throw new KvStoreError('unavailable', `kv-store directory: redis error: ${error.message}`);
    return reply;
  });
}

function isStringRecord(value: unknown): value is Record<string, string> {
  return typeof value === 'object' && value !== null && Object.values(value).every((v) => typeof v === 'string');
}
