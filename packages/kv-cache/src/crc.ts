// CRC-32 (IEEE, as zlib computes it) arithmetic without passes over data: the CRC of a concatenation
// from the CRCs of its parts, in O(log n). See blockCrc32 in codec.ts for why.

const POLY = 0xedb88320; // reflected x^32 + x^26 + ... + 1

/** a(x) * b(x) mod p(x), in zlib's reflected bit order. */
function multModP(a: number, b: number): number {
  let m = 0x8000_0000;
  let p = 0;
  for (;;) {
    if ((a & m) !== 0) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/** x^(2^k) mod p(x) for k = 0..31. */
const X2N: number[] = (() => {
  const t: number[] = [];
  let p = 1 << 30; // x^1
  for (let k = 0; k < 32; k++) {
    t.push(p >>> 0);
    p = multModP(p, p);
  }
  return t;
})();

/** x^(8 * bytes) mod p(x). */
function xPow8n(bytes: number): number {
  let p = 0x8000_0000; // x^0
  let k = 3; // 8 = 2^3
  let n = bytes;
  while (n > 0) {
    if (n % 2 === 1) p = multModP(X2N[k & 31] as number, p);
    n = Math.floor(n / 2);
    k++;
  }
  return p;
}

/** x^(8n) for the few lengths in use (every block of a model has the same): a Map hit, not ~500 steps. */
const shifts = new Map<number, number>();

/** CRC-32 of A ‖ B from CRC-32(A), CRC-32(B) and B's length (zlib's crc32_combine). */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  let shift = shifts.get(lengthB);
  if (shift === undefined) {
    shift = xPow8n(lengthB);
    if (shifts.size < 64) shifts.set(lengthB, shift);
  }
  return (multModP(shift, crcA >>> 0) ^ (crcB >>> 0)) >>> 0;
}
