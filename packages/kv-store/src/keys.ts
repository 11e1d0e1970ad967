// Identifiers: block hashes, model ids, and the key a block is stored under.
import { isBlockHash, type BlockHash } from '@pdserve/contracts';
import { invalidArgument } from './errors';

export { isBlockHash, type BlockHash };

/** (modelId, hash) as one string; a space cannot occur in a model id, so it is unambiguous. */
export type BlockKey = string;

/** Printable ASCII without spaces: covers Hugging Face ids ("Qwen/Qwen2.5-0.5B") and local names. */
const MODEL_ID = /^[\x21-\x7e]{1,256}$/;

export function isModelId(value: string): boolean {
  return MODEL_ID.test(value);
}

export function checkHash(hash: string): void {
  if (!isBlockHash(hash)) {
    throw invalidArgument(`block hash must be 16 lowercase hex characters, got ${JSON.stringify(hash)}`);
  }
}

export function checkModelId(modelId: string): void {
  if (typeof modelId !== 'string' || !MODEL_ID.test(modelId)) {
    throw invalidArgument(`model id must be 1-256 printable ASCII characters without spaces, got ${JSON.stringify(modelId)}`);
  }
}

export function blockKey(modelId: string, hash: BlockHash): BlockKey {
  return `${modelId} ${hash}`;
}
