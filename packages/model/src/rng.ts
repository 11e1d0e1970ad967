import { getRandomValues } from 'node:crypto';

/** The four 32-bit words of an Rng; plain numbers so it can be saved, sent to another worker and restored. */
export type RngState = readonly [number, number, number, number];

const TWO_POW_53 = 2 ** 53;
const MASK_64 = (1n << 64n) - 1n;

/**
 * xoshiro128** (Blackman & Vigna): small, fast on 32-bit integer ops, and identical on every platform,
 * so a seed gives the same stream on every worker.
 */
export class Rng {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;

  /** `seed` is any integer (negatives and values beyond 2^53 are taken modulo 2^64). */
  constructor(seed: number) {
    if (!Number.isInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
    this.state = seedState(BigInt(seed));
  }

  /** A generator seeded from the OS entropy source. */
  static random(): Rng {
    const rng = new Rng(0);
    const words = getRandomValues(new Uint32Array(4));
    // xoshiro must not start from all zeros.
    rng.state = [words[0] | 1, words[1], words[2], words[3]];
    return rng;
  }

  get state(): RngState {
    return [this.s0 >>> 0, this.s1 >>> 0, this.s2 >>> 0, this.s3 >>> 0];
  }

  set state(s: RngState) {
    if (s.every((w) => w >>> 0 === 0)) throw new RangeError('rng state must not be all zeros');
    [this.s0, this.s1, this.s2, this.s3] = [s[0] >>> 0, s[1] >>> 0, s[2] >>> 0, s[3] >>> 0];
  }

  /** Next 32 random bits as an unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Advances past `n` nextFloat draws, as if they had been taken. */
  skipFloats(n: number): void {
    for (let i = 0; i < 2 * n; i++) this.nextUint32();
  }

  /** Uniform in [0, 1) with 53 bits of precision (two 32-bit outputs). */
  nextFloat(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 2 ** 26 + lo) / TWO_POW_53;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

// splitmix64 expands one 64-bit seed into the 128-bit state, as the xoshiro authors recommend.
function seedState(seed: bigint): RngState {
  let x = BigInt.asUintN(64, seed);
  const next = (): bigint => {
    x = (x + 0x9e3779b97f4a7c15n) & MASK_64;
    let z = x;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK_64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK_64;
    return z ^ (z >> 31n);
  };
  const a = next();
  const b = next();
  const words: [number, number, number, number] = [Number(a & 0xffffffffn), Number(a >> 32n), Number(b & 0xffffffffn), Number(b >> 32n)];
  if (words.every((w) => w === 0)) words[0] = 1;
  return words;
}
