import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  BlockPool,
  blockBytes,
  blockCrc32,
  chainHashes,
  crc32 as fastCrc32,
  crc32Combine,
  crc32Implementation,
  crc32Short,
  decodeBlock,
  encodeBlock,
  hashBlock,
  rootHash,
  type KvCacheEvent,
} from './index';

const layout = { numLayers: 2, numKvHeads: 2, headDim: 4, blockSize: 4 };

describe('chained block hashes', () => {
  it('equal prefixes hash equal, and a change anywhere before changes everything after', () => {
    const a = chainHashes([1, 2, 3, 4, 5, 6, 7, 8, 9], 4, 'm');
    const b = chainHashes([1, 2, 3, 4, 5, 6, 7, 8], 4, 'm');
    const c = chainHashes([0, 2, 3, 4, 5, 6, 7, 8], 4, 'm');
    expect(a).toHaveLength(2);
    expect(a).toEqual(b);
    expect(c[0]).not.toBe(a[0]);
    expect(c[1]).not.toBe(a[1]);
    expect(a[0]).toMatch(/^[0-9a-f]{16}$/);
  });
  it('depends on the model id and the salt', () => {
    const t = [1, 2, 3, 4];
    expect(chainHashes(t, 4, 'm')[0]).not.toBe(chainHashes(t, 4, 'n')[0]);
    expect(chainHashes(t, 4, 'm', 's')[0]).not.toBe(chainHashes(t, 4, 'm')[0]);
    expect(hashBlock(rootHash('m'), t)).toBe(chainHashes(t, 4, 'm')[0]);
  });
});

describe('BlockPool', () => {
  it('sizes itself from a byte budget', () => {
    const pool = BlockPool.fromBudget(layout, blockBytes(layout) * 10 + 5);
    expect(pool.numBlocks).toBe(10);
    expect(() => BlockPool.fromBudget(layout, 10)).toThrow(/holds no block/);
  });

  it('keeps freed blocks cached and evicts least-recently-used first', () => {
    const pool = new BlockPool(layout, 3);
    const events: KvCacheEvent[] = [];
    pool.onEvent((e) => events.push(e));
    const [a, b, c] = [pool.allocate()!, pool.allocate()!, pool.allocate()!];
    expect(pool.allocate()).toBeUndefined();
    pool.publish(a, 'aaaaaaaaaaaaaaaa');
    pool.publish(b, 'bbbbbbbbbbbbbbbb');
    pool.release(b);
    pool.release(a);
    pool.release(c); // no hash: reused first
    expect(pool.numFree).toBe(3);
    expect(pool.numCached).toBe(2);
    expect(pool.allocate()).toBe(c);
    // b was freed before a, so it goes first.
    expect(pool.allocate()).toBe(b);
    expect(pool.has('bbbbbbbbbbbbbbbb')).toBe(false);
    expect(pool.acquireCached('aaaaaaaaaaaaaaaa')).toBe(a);
    expect(pool.refCountOf(a)).toBe(1);
    expect(events.map((e) => `${e.kind}:${e.hash[0]}`)).toEqual(['stored:a', 'stored:b', 'removed:b']);
  });

  it('shares a cached block between sequences by reference count', () => {
    const pool = new BlockPool(layout, 2);
    const a = pool.allocate()!;
    pool.publish(a, '0123456789abcdef');
    expect(pool.acquireCached('0123456789abcdef')).toBe(a);
    pool.release(a);
    expect(pool.numFree).toBe(1);
    pool.release(a);
    expect(pool.numFree).toBe(2);
    expect(() => pool.release(a)).toThrow(/no reference/);
  });
});

describe('block codec', () => {
  it('round-trips a block and rejects corruption, a wrong shape and garbage', () => {
    const pool = new BlockPool(layout, 1);
    const id = pool.allocate()!;
    pool.view(id).forEach((_, i, v) => (v[i] = i * 0.5));
    const bytes = encodeBlock(layout, pool.bytes(id), 'fedcba9876543210', 4);
    const dec = decodeBlock(layout, bytes);
    expect(dec.hash).toBe('fedcba9876543210');
    expect(dec.numTokens).toBe(4);
    expect(new Float32Array(dec.payload.slice().buffer)).toEqual(pool.view(id));
    const bad = bytes.slice();
    bad[bad.length - 1]! ^= 1;
    expect(() => decodeBlock(layout, bad)).toThrow(/checksum/);
    expect(() => decodeBlock({ ...layout, headDim: 8 }, bytes)).toThrow(/shape/);
    expect(() => decodeBlock(layout, new Uint8Array(100))).toThrow(/magic/);
    expect(() => decodeBlock(layout, bytes.subarray(0, 60))).toThrow(/payload/);
  });
});

describe('CRC-32 over bytes', () => {
  it("uses the native build on this platform, and it computes exactly zlib's CRC-32", () => {
    // @node-rs/crc32 ships prebuilt for linux-x64 (where CI runs); elsewhere zlib's is the fallback.
    if (process.platform === 'linux' && process.arch === 'x64' && process.env.PDSERVE_CRC32 !== 'zlib')
      expect(crc32Implementation).toBe('native');
    const backing = randomBytes(70_000);
    for (const [from, to] of [
      [0, 0],
      [0, 1],
      [3, 43],
      [5, 32_813],
      [1, 70_000],
    ] as const) {
      const view = backing.subarray(from, to);
      expect(fastCrc32(view)).toBe(crc32(view) >>> 0);
      expect(fastCrc32(view, 0xdead_beef)).toBe(crc32(view, 0xdead_beef) >>> 0);
    }
    // A view of a plain ArrayBuffer (not a Buffer), at an odd offset: how blocks arrive.
    const plain = new Uint8Array(new ArrayBuffer(40_000), 7, 32_808).map((_, i) => i * 13);
    expect(fastCrc32(plain)).toBe(crc32(plain) >>> 0);
  });
});

describe('CRC-32 without a pass over the bytes', () => {
  it('combines the CRCs of two parts into the CRC of their concatenation, as zlib does', () => {
    for (const [a, b] of [
      [0, 0],
      [1, 1],
      [40, 32768],
      [7, 3],
      [100, 0],
      [0, 100],
      [1000, 65537],
    ] as const) {
      const A = randomBytes(a);
      const B = randomBytes(b);
      expect(crc32Combine(crc32(A), crc32(B), b)).toBe(crc32(Buffer.concat([A, B])) >>> 0);
    }
  });

  it('computes short CRCs (block headers) in JS exactly as zlib does', () => {
    for (const n of [0, 1, 7, 40, 41, 300]) {
      const bytes = randomBytes(n + 5);
      expect(crc32Short(bytes, 3, 3 + n)).toBe(crc32(bytes.subarray(3, 3 + n)) >>> 0);
    }
  });

  it("derives a block's whole CRC from its header, and decodes a block verified in transit without re-checking its payload", () => {
    const payload = new Uint8Array(blockBytes(layout)).map((_, i) => i * 7);
    const bytes = encodeBlock(layout, payload, 'fedcba9876543210', 4);
    const whole = crc32(bytes) >>> 0;
    expect(blockCrc32(bytes)).toBe(whole);
    expect(decodeBlock(layout, bytes, whole).numTokens).toBe(4);
    // A header whose payload CRC does not match: the derived CRC no longer equals the bytes' CRC.
    const lying = bytes.slice();
    lying[24]! ^= 1;
    expect(blockCrc32(lying)).not.toBe(crc32(lying) >>> 0);
    expect(() => decodeBlock(layout, lying, crc32(lying) >>> 0)).toThrow(/checksum/);
    // And a CRC that does not describe these bytes is refused too.
    expect(() => decodeBlock(layout, bytes, whole ^ 1)).toThrow(/checksum/);
  });
});

describe('BlockPool memory', () => {
  it("is backed by the OS when made, not at a block's first use (RSS grows by the pool's size)", () => {
    // 512 blocks of 128 KiB (K and V): 64 MiB, far above what anything else in this test allocates.
    const big = { numLayers: 4, numKvHeads: 4, headDim: 64, blockSize: 16 };
    const before = process.memoryUsage().rss;
    const pool = new BlockPool(big, 512);
    const grown = process.memoryUsage().rss - before;
    expect(pool.data.byteLength).toBe(64 * 2 ** 20);
    // Untouched, it grows by ≈ 0; half leaves room for a collection of other garbage meanwhile.
    expect(grown).toBeGreaterThan(0.5 * pool.data.byteLength);
  });
});
