// Validation at the edge: every argument of a store call is checked here, once, before anything changes.
import { BLOCK_HEADER_BYTES, blockBytes, type KvLayout } from '@pdserve/kv-cache';
import { KvStoreError, invalidArgument } from './errors';
import { checkHash, checkModelId, type BlockHash } from './keys';
import type { KvStoreConfig } from './options';
import type { PutEntry } from './types';

export class RequestChecks {
  constructor(private readonly c: KvStoreConfig) {}

  /** The model's expected layout, if configured; throws for an unserved or malformed model id. */
  model(modelId: string): KvLayout | undefined {
    checkModelId(modelId);
    const { models } = this.c;
    if (models !== undefined && !models.has(modelId)) {
      throw new KvStoreError(
        'not_found',
        `model ${JSON.stringify(modelId)} is not served by this store (it serves ${[...models.keys()].join(', ')})`,
      );
    }
    return models?.get(modelId);
  }

  hashes(hashes: readonly BlockHash[], what: string): void {
    if (!Array.isArray(hashes)) throw invalidArgument(`${what}: hashes must be an array`);
    this.batch(hashes.length, what);
    for (const h of hashes) checkHash(h);
  }

  putEntries(entries: readonly PutEntry[], layout: KvLayout | undefined): void {
    if (!Array.isArray(entries) || entries.length === 0) throw invalidArgument('put: needs at least one block');
    this.batch(entries.length, 'put');
    const expected = layout === undefined ? undefined : BLOCK_HEADER_BYTES + blockBytes(layout);
    const seen = new Set<BlockHash>();
    for (const { hash, size } of entries) {
      checkHash(hash);
      if (seen.has(hash)) throw invalidArgument(`put: block ${hash} appears twice`);
      seen.add(hash);
      if (!Number.isInteger(size) || size <= BLOCK_HEADER_BYTES) {
        throw invalidArgument(
          `put: block ${hash} size must be a whole number of bytes above the ${BLOCK_HEADER_BYTES}-byte header, got ${size}`,
        );
      }
      if (size > this.c.maxBlockBytes) {
        throw invalidArgument(`put: block ${hash} is ${size} bytes, over this store's limit of ${this.c.maxBlockBytes} (maxBlockBytes)`);
      }
      if (expected !== undefined && size !== expected) {
        throw invalidArgument(`put: block ${hash} is ${size} bytes, but a block of this model is ${expected}`);
      }
    }
  }

  /** A duration argument in ms: defaulted, then required to be in 1..max. */
  duration(name: string, value: number | undefined, fallback: number, max: number): number {
    const ms = value ?? fallback;
    if (!Number.isFinite(ms) || ms < 1 || ms > max) throw invalidArgument(`${name} must be between 1 and ${max} ms, got ${ms}`);
    return ms;
  }

  private batch(n: number, what: string): void {
    if (n > this.c.maxBatchBlocks)
      throw invalidArgument(`${what}: ${n} blocks in one call, over the limit of ${this.c.maxBatchBlocks} (maxBatchBlocks)`);
  }
}
