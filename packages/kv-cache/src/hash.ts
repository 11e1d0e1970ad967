import { createHash } from 'node:crypto';
import type { BlockHash } from '@pdserve/contracts';

export type { BlockHash };

/**
 * h[i] = first 8 bytes of SHA-256(h[i-1] ‖ token ids of block i as u32 LE), where the root h[-1] is
 * SHA-256 of the model id and the cache salt (the salt enters once, at the root, and so every hash of the
 * chain). Equal hash ⇒ equal model, salt and prefix (up to a 2^-64 collision), on every node. SHA-256
 * because it is native, fast enough (~1 µs a block) and stable across versions.
 */
export function rootHash(modelId: string, salt = ''): BlockHash {
  return createHash('sha256').update(`pdserve-kv-v1\0${modelId}\0${salt}`).digest('hex').slice(0, 16);
}

export function hashBlock(parent: BlockHash, tokens: ArrayLike<number>): BlockHash {
  const buf = Buffer.allocUnsafe(8 + tokens.length * 4);
  buf.write(parent, 0, 'hex');
  for (let i = 0; i < tokens.length; i++) buf.writeUInt32LE(tokens[i]! >>> 0, 8 + i * 4);
  return createHash('sha256').update(buf).digest('hex').slice(0, 16);
}

/**
 * Full blocks of a prompt of `tokens` tokens below the block that holds its last token: what a prefix cache
 * may serve it or a prefill may hand over ahead of the rest, since the last prompt token is always computed
 * (its logits give the first output token).
 */
export function blocksBeforeLastToken(tokens: number, blockSize: number): number {
  return tokens > 0 ? Math.floor((tokens - 1) / blockSize) : 0;
}

/** Hashes of every full block of `tokens`, chained from the model's root. */
export function chainHashes(tokens: readonly number[], blockSize: number, modelId: string, salt = ''): BlockHash[] {
  const out: BlockHash[] = [];
  let parent = rootHash(modelId, salt);
  for (let i = 0; i + blockSize <= tokens.length; i += blockSize) {
    parent = hashBlock(parent, tokens.slice(i, i + blockSize));
    out.push(parent);
  }
  return out;
}
