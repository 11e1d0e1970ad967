// Hand-made blocks, stores and temp folders for this package's tests.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BLOCK_HEADER_BYTES, blockBytes, encodeBlock, type KvLayout } from '@pdserve/kv-cache';
import type { BlockHash } from './keys';
import type { KvStore } from './store';

export const LAYOUT: KvLayout = { numLayers: 2, numKvHeads: 2, headDim: 8, blockSize: 4 };
/** 1064 bytes. */
export const BLOCK = BLOCK_HEADER_BYTES + blockBytes(LAYOUT);
export const MODEL = 'test/model-a';

/** A distinct valid hash per number. */
export function hashOf(n: number): BlockHash {
  return n.toString(16).padStart(16, '0');
}

/** An encoded block whose payload depends on `seed`, with `hash` in its header. */
export function makeBlock(hash: BlockHash, seed = 1, layout: KvLayout = LAYOUT): Uint8Array {
  const floats = new Float32Array(blockBytes(layout) / 4);
  for (let i = 0; i < floats.length; i++) floats[i] = Math.sin(seed * 1000 + i);
  return encodeBlock(layout, new Uint8Array(floats.buffer), hash, layout.blockSize);
}

/** beginPut + writeBlock + commitPut for blocks numbered `ns`. */
export async function putBlocks(store: KvStore, ns: readonly number[], modelId = MODEL): Promise<void> {
  const blocks = ns.map((n) => ({ hash: hashOf(n), bytes: makeBlock(hashOf(n), n) }));
  const { putId } = await store.beginPut(
    modelId,
    blocks.map((b) => ({ hash: b.hash, size: b.bytes.byteLength })),
  );
  for (const b of blocks) store.writeBlock(putId, b.hash, b.bytes);
  store.commitPut(putId);
}

export function tempDir(): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), 'pdserve-kvstore-'));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
