// The router's seedable PRNG (mulberry32) and bit mixer, and what the bench builds on them.
import { mix32 } from '@pdserve/router';

export { createRng, mix32 } from '@pdserve/router';

/**
 * A 32-bit seed from several non-negative integer keys (each up to 2^53), so that a stream can be keyed by
 * (seed, purpose, index) and regenerated independently of every other stream.
 */
export function seedOf(...keys: readonly number[]): number {
  let h = 0x9e3779b9;
  for (const k of keys) {
    const lo = k % 4294967296;
    const hi = Math.floor(k / 4294967296);
    h = mix32((h ^ mix32(lo >>> 0)) + 0x7f4a7c15);
    h = mix32((h ^ mix32(hi >>> 0)) + 0x165667b1);
  }
  return h;
}

/** Uniform integer in [lo, hi). */
export function randomInt(random: () => number, lo: number, hi: number): number {
  return lo + Math.floor(random() * (hi - lo));
}
