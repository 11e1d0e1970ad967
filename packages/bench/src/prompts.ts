import { createRng, randomInt } from './rng';

/** Token ids a synthetic prompt draws from, [min, max): above special and byte tokens, inside small vocabs. */
export interface TokenRange {
  readonly min: number;
  readonly max: number;
}

/** Safe for Llama-2-style 32k vocabularies (ids < 100 hold special and byte-fallback tokens). */
export const DEFAULT_TOKEN_RANGE: TokenRange = { min: 100, max: 30_000 };

/** `length` token ids from a generator seeded by `seed`: equal seeds give equal ids. */
export function seededTokens(seed: number, length: number, range: TokenRange = DEFAULT_TOKEN_RANGE): number[] {
  const random = createRng(seed);
  const out = new Array<number>(length);
  for (let i = 0; i < length; i++) out[i] = randomInt(random, range.min, range.max);
  return out;
}

/**
 * Common English words, each one token with its leading space in BPE and SentencePiece vocabularies, so
 * that a text prompt of n words is about n tokens. Text prompts are for servers or endpoints (chat) that
 * cannot take token ids; lengths are then approximate.
 */
const WORDS = (
  'the of and to in is that for it as was with be by on not he this are or his from at which but have an had ' +
  'they you were their one all we can her has there been if more when will would who so no she other its may ' +
  'these about them than some time into only do could new also two any what first then like our over such my ' +
  'out made him most after up many must well me year should years used where state people between world ' +
  'city under same each those work both while part through long day before great three system water small ' +
  'house number place point room school book word line name side hand head light night power story study'
).split(' ');

/** Renders token ids as words; equal id prefixes give equal text prefixes. */
export function renderText(tokenIds: readonly number[]): string {
  let s = '';
  for (let i = 0; i < tokenIds.length; i++) s += (i === 0 ? '' : ' ') + WORDS[tokenIds[i]! % WORDS.length]!;
  return s;
}
