import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ModelLoadError, type ModelSpec } from './config';

/**
 * Throws ModelLoadError unless `draft` can propose tokens for `target` (speculative decoding): the same
 * vocabulary size, and tokenizers that map the same strings to the same ids (tokenizer.json's vocab
 * and added tokens). A draft that passes may still be a poor one; it is never a wrong one.
 */
export function checkDraftCompatible(target: ModelSpec, draft: ModelSpec): void {
  const problem = (what: string): never => {
    throw new ModelLoadError(`draft model ${draft.dir} cannot speculate for ${target.dir}: ${what}`);
  };
  if (draft.vocabSize !== target.vocabSize) problem(`vocab_size ${draft.vocabSize} differs from the target's ${target.vocabSize}`);
  const a = vocabDigest(target.dir);
  const b = vocabDigest(draft.dir);
  if (a !== b) problem("tokenizer.json maps tokens to different ids than the target's (a draft needs the same tokenizer)");
}

/** A digest of tokenizer.json's token → id maps (its model vocab and added tokens). */
function vocabDigest(dir: string): string {
  let tok: { model?: { vocab?: unknown }; added_tokens?: { id: number; content: string }[] };
  try {
    tok = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as typeof tok;
  } catch (err) {
    throw new ModelLoadError(`cannot read tokenizer.json in ${dir}: ${(err as Error).message}`);
  }
  const added = (tok.added_tokens ?? []).map((t) => [t.id, t.content]);
  return createHash('sha256')
    .update(JSON.stringify([tok.model?.vocab ?? null, added]))
    .digest('hex');
}
