// A model's vocabulary as xgrammar reads it: every token's text by id, and how that text encodes bytes.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export type VocabType = 'RAW' | 'BYTE_FALLBACK' | 'BYTE_LEVEL';

export interface Vocabulary {
  /** Token text by id as tokenizer.json spells it; '' for added tokens, which the grammar never allows. */
  readonly encoded: readonly string[];
  /** BYTE_LEVEL: GPT-2's byte-to-char alphabet (Qwen); BYTE_FALLBACK: '▁' for space and <0xAB> pieces (Llama 2, Mistral). */
  readonly type: VocabType;
}

interface TokenizerJson {
  readonly model?: { readonly vocab?: Record<string, number> | readonly [string, number][] };
  readonly added_tokens?: readonly { readonly id: number; readonly content: string }[];
  readonly decoder?: unknown;
}

/** Reads `tokenizer.json` of a Hugging Face model directory. */
export function vocabularyFromDir(dir: string): Vocabulary {
  let parsed: TokenizerJson;
  try {
    parsed = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as TokenizerJson;
  } catch (err) {
    throw new Error(`grammar: cannot read tokenizer.json in ${dir} (${(err as Error).message})`);
  }
  return vocabularyFromTokenizerJson(parsed);
}

export function vocabularyFromTokenizerJson(json: TokenizerJson): Vocabulary {
  const vocab = json.model?.vocab;
  if (vocab === undefined || Array.isArray(vocab)) {
    // Unigram models list [piece, score] pairs; none we serve uses one yet.
    throw new Error('grammar: tokenizer.json has no BPE/WordPiece vocab map');
  }
  const encoded: string[] = [];
  for (const [text, id] of Object.entries(vocab as Record<string, number>)) encoded[id] = text;
  // Added tokens (BOS, EOS, chat markers) are dropped from decoded text: the grammar must never count on
  // one. xgrammar treats '' as a special token; EOS is allowed separately, as a stop token.
  for (const t of json.added_tokens ?? []) encoded[t.id] = '';
  for (let i = 0; i < encoded.length; i++) encoded[i] ??= '';
  return { encoded, type: vocabTypeOf(json.decoder) };
}

/** From the decoder pipeline: ByteLevel → BYTE_LEVEL; ByteFallback or Metaspace ('▁') → BYTE_FALLBACK. */
function vocabTypeOf(decoder: unknown): VocabType {
  const types = new Set<string>();
  const walk = (d: unknown): void => {
    if (typeof d !== 'object' || d === null) return;
    const rec = d as { type?: unknown; decoders?: unknown };
    if (typeof rec.type === 'string') types.add(rec.type);
    if (Array.isArray(rec.decoders)) rec.decoders.forEach(walk);
  };
  walk(decoder);
  if (types.has('ByteLevel')) return 'BYTE_LEVEL';
  if (types.has('ByteFallback') || types.has('Metaspace')) return 'BYTE_FALLBACK';
  return 'RAW';
}
