// Seeded pseudo-random numbers for weights. Integer-only arithmetic (no Math.log/cos) so that the same seed
// gives the same bits on every machine and Node version.

/** FNV-1a over the UTF-16 code units of a string. */
function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** splitmix32 step: spreads a weak seed over all bits. */
function mix(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** xoshiro128**: fast, 128-bit state, good enough statistics for initialising weights. */
export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /** One independent stream per (seed, stream name), so tensors can be generated in any order. */
  constructor(seed: number, stream: string) {
    const h = hashString(stream);
    // Seeds are integers that may exceed 32 bits; fold the high part in.
    const lo = seed >>> 0;
    const hi = Math.floor(seed / 0x100000000) >>> 0;
    this.a = mix(lo ^ h);
    this.b = mix(this.a ^ hi);
    this.c = mix(this.b ^ 0x6a09e667);
    this.d = mix(this.c ^ h);
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1;
  }

  /** Next 32 random bits as an unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return result;
  }

  /**
   * Fills `out` with uniform values of mean `mean` and standard deviation `std`
   * (uniform on mean ± std·√3; 24 random bits per value, exactly representable in float32).
   */
  fillUniform(out: Float32Array, mean: number, std: number): void {
    const halfWidth = std * Math.sqrt(3);
    for (let i = 0; i < out.length; i++) {
      const u = (this.nextU32() >>> 8) / 0x800000 - 1; // in [-1, 1)
      out[i] = mean + u * halfWidth;
    }
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
