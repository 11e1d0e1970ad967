/** Seedable PRNG (mulberry32): uniform floats in [0, 1), the same sequence for the same seed. */
export function createRng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Murmur3's finaliser: spreads every input bit over the output (a bijection on 32-bit integers). */
export function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

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
