// CRC-32 (IEEE, as zlib computes it): over bytes, as fast as this machine allows (`crc32`), and
// arithmetic without passes over data: the CRC of a concatenation from the CRCs of its parts, in
// O(log n) (see blockCrc32 in codec.ts for why).
import { createRequire } from 'node:module';
import { crc32 as zlibCrc32 } from 'node:zlib';

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

/**
 * Multiplying by x^(8n) for the few lengths in use (every block of a model has the same), as four
 * 256-entry tables: the product is linear in the other factor, so it is the XOR of each byte's product.
 * A Map hit and four lookups, not ~500 steps of bit arithmetic.
 */
const shifts = new Map<number, Uint32Array>();

function shiftTable(lengthB: number): Uint32Array {
  const shift = xPow8n(lengthB);
  const t = new Uint32Array(4 * 256);
  for (let k = 0; k < 4; k++) for (let v = 0; v < 256; v++) t[k * 256 + v] = multModP(shift, (v << (8 * k)) >>> 0);
  return t;
}

/** CRC-32 of A ‖ B from CRC-32(A), CRC-32(B) and B's length (zlib's crc32_combine). */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  let t = shifts.get(lengthB);
  if (t === undefined) {
    t = shiftTable(lengthB);
    if (shifts.size < 64) shifts.set(lengthB, t);
  }
  const a = crcA >>> 0;
  return (
    ((t[a & 255] as number) ^
      (t[256 + ((a >>> 8) & 255)] as number) ^
      (t[512 + ((a >>> 16) & 255)] as number) ^
      (t[768 + (a >>> 24)] as number) ^
      crcB) >>>
    0
  );
}

/** The byte-at-a-time table of zlib's CRC-32. */
const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/**
 * CRC-32 of a few bytes (a block header), equal to zlib's crc32; for inputs this short a loop in JS beats
 * the call into native code. Long inputs belong to `crc32`.
 */
export function crc32Short(bytes: Uint8Array, start: number, end: number): number {
  let c = 0xffff_ffff;
  for (let i = start; i < end; i++) c = (TABLE[(c ^ (bytes[i] as number)) & 255] as number) ^ (c >>> 8);
  return (c ^ 0xffff_ffff) >>> 0;
}

type Crc32 = (data: Uint8Array, initial: number) => number;

/**
 * @node-rs/crc32 (crc32fast, prebuilt for the common platforms): CRC-32 folded with carry-less multiplies,
 * ~2x zlib's on 32 KiB blocks and ~3x on megabytes here. Used only if it loads and agrees with zlib on a
 * sample; otherwise zlib's, which computes the same function.
 */
function loadNative(): Crc32 | null {
  if (process.env.PDSERVE_CRC32 === 'zlib') return null;
  try {
    const native = (createRequire(import.meta.url)('@node-rs/crc32') as { crc32(data: Uint8Array, initial?: number): number }).crc32;
    const sample = new Uint8Array(1021).map((_, i) => (i * 131 + 7) & 255);
    const agrees =
      [0, 0x1234_5678].every((init) => native(sample, init) >>> 0 === zlibCrc32(sample, init) >>> 0) &&
      native(sample.subarray(3, 900), 0) >>> 0 === zlibCrc32(sample.subarray(3, 900)) >>> 0;
    return agrees ? native : null;
  } catch {
    return null;
  }
}

const native = loadNative();

/** Which implementation `crc32` runs: 'native' (@node-rs/crc32) or 'zlib' (set PDSERVE_CRC32=zlib to force it). */
export const crc32Implementation: 'native' | 'zlib' = native === null ? 'zlib' : 'native';

/** CRC-32 of `data`, continuing from `initial` (zlib's crc32(data, initial)). */
export const crc32: (data: Uint8Array, initial?: number) => number =
  native === null ? (data, initial = 0) => zlibCrc32(data, initial) >>> 0 : (data, initial = 0) => native(data, initial) >>> 0;
