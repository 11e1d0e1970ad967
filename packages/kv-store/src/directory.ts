// Replica metadata: which store node holds which (modelId, hash), in which tier. The interface, a liveness
// check that keeps a dead node's entries out of answers, and the in-process implementation.
import { isToken } from '@pdserve/control-plane';
import { invalidArgument } from './errors';
import { blockKey, checkHash, checkModelId, type BlockHash, type BlockKey } from './keys';
import type { StoreTier } from './types';

export interface DirectoryEntry {
  readonly hash: BlockHash;
  readonly tier: StoreTier;
}

export interface BlockLocation {
  readonly node: string;
  readonly tier: StoreTier;
}

export interface BlockDirectory {
  /** Records that `node` holds these blocks; recording a block again updates its tier. */
  record(node: string, modelId: string, entries: readonly DirectoryEntry[]): Promise<void>;
  forget(node: string, modelId: string, hashes: readonly BlockHash[]): Promise<void>;
  /** For each hash, the live nodes holding it: memory tier first, then by node id. */
  locate(modelId: string, hashes: readonly BlockHash[]): Promise<BlockLocation[][]>;
  /** Forgets everything a node holds (it left, or restarted without its memory tier). */
  dropNode(node: string): Promise<void>;
  close(): Promise<void>;
}

/** Which of these nodes are alive. locate() leaves the others out of its answer and cleans their entries. */
export interface NodeLiveness {
  live(nodes: readonly string[]): Promise<ReadonlySet<string>>;
}

export const everyNodeLive: NodeLiveness = { live: async (nodes) => new Set(nodes) };

const TIER_RANK: Readonly<Record<StoreTier, number>> = { memory: 0, disk: 1 };

export function sortLocations(locations: BlockLocation[]): BlockLocation[] {
  return locations.sort((a, b) => TIER_RANK[a.tier] - TIER_RANK[b.tier] || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
}

export function checkNode(node: string): void {
  if (typeof node !== 'string' || !isToken(node)) {
    throw invalidArgument(`store node id must be 1-128 characters of [A-Za-z0-9_-], got ${JSON.stringify(node)}`);
  }
}

export function checkEntries(modelId: string, entries: readonly DirectoryEntry[]): void {
  checkModelId(modelId);
  for (const e of entries) {
    checkHash(e.hash);
    if (e.tier !== 'memory' && e.tier !== 'disk') throw invalidArgument(`tier must be memory or disk, got ${JSON.stringify(e.tier)}`);
  }
}

export function checkHashes(modelId: string, hashes: readonly BlockHash[]): void {
  checkModelId(modelId);
  for (const h of hashes) checkHash(h);
}

export class InProcessBlockDirectory implements BlockDirectory {
  private readonly holders = new Map<BlockKey, Map<string, StoreTier>>();
  private readonly byNode = new Map<string, Set<BlockKey>>();

  constructor(private readonly liveness: NodeLiveness = everyNodeLive) {}

  async record(node: string, modelId: string, entries: readonly DirectoryEntry[]): Promise<void> {
    checkNode(node);
    checkEntries(modelId, entries);
    let keys = this.byNode.get(node);
    if (keys === undefined) this.byNode.set(node, (keys = new Set()));
    for (const { hash, tier } of entries) {
      const key = blockKey(modelId, hash);
      let nodes = this.holders.get(key);
      if (nodes === undefined) this.holders.set(key, (nodes = new Map()));
      nodes.set(node, tier);
      keys.add(key);
    }
  }

  async forget(node: string, modelId: string, hashes: readonly BlockHash[]): Promise<void> {
    checkNode(node);
    checkHashes(modelId, hashes);
    for (const hash of hashes) this.unlink(node, blockKey(modelId, hash));
  }

  async locate(modelId: string, hashes: readonly BlockHash[]): Promise<BlockLocation[][]> {
    checkHashes(modelId, hashes);
    const found = hashes.map((h) => [...(this.holders.get(blockKey(modelId, h)) ?? new Map<string, StoreTier>())]);
    const live = await this.liveness.live([...new Set(found.flatMap((f) => f.map(([node]) => node)))]);
    return found.map((holders, i) => {
      const locations: BlockLocation[] = [];
      for (const [node, tier] of holders) {
        if (live.has(node)) locations.push({ node, tier });
        else this.unlink(node, blockKey(modelId, hashes[i]!));
      }
      return sortLocations(locations);
    });
  }

  async dropNode(node: string): Promise<void> {
    checkNode(node);
    for (const key of this.byNode.get(node) ?? []) this.unlink(node, key);
    this.byNode.delete(node);
  }

  async close(): Promise<void> {
    this.holders.clear();
    this.byNode.clear();
  }

  private unlink(node: string, key: BlockKey): void {
    const nodes = this.holders.get(key);
    nodes?.delete(node);
    if (nodes?.size === 0) this.holders.delete(key);
    this.byNode.get(node)?.delete(key);
  }
}
