import { describe, expect, it } from 'vitest';
import { blockHeaderNames, encodeBlock } from '@pdserve/kv-cache';
import { inspectBlock } from './inspect-block';
import { BLOCK, LAYOUT, hashOf, makeBlock } from './test-helpers';

describe('inspectBlock', () => {
  it('describes a valid block without knowing the model', () => {
    const info = inspectBlock(makeBlock(hashOf(7)));
    expect(info).toMatchObject({ layout: LAYOUT, numTokens: 4, hash: hashOf(7), payloadBytes: BLOCK - 40 });
    expect(inspectBlock(makeBlock(hashOf(7)), LAYOUT).hash).toBe(hashOf(7));
    expect(blockHeaderNames(makeBlock(hashOf(7)), hashOf(7))).toBe(true);
    expect(blockHeaderNames(makeBlock(hashOf(7)), hashOf(8))).toBe(false);
    expect(blockHeaderNames(makeBlock(hashOf(0xabc)), hashOf(0xabc))).toBe(true);
    expect(blockHeaderNames(makeBlock(hashOf(0xabc)), hashOf(0xabc).toUpperCase())).toBe(false);
    expect(blockHeaderNames(makeBlock(hashOf(7)), 'short')).toBe(false);
  });

  it('reads a block encoded without a hash as hash undefined', () => {
    const bytes = encodeBlock(LAYOUT, new Uint8Array(BLOCK - 40), undefined, 2);
    expect(inspectBlock(bytes)).toMatchObject({ hash: undefined, numTokens: 2 });
    expect(blockHeaderNames(bytes, hashOf(3))).toBe(true); // a header without a hash names none to contradict
  });

  it('names what is wrong', () => {
    const good = makeBlock(hashOf(1));
    expect(() => inspectBlock(new Uint8Array(10))).toThrow(/shorter than its 40-byte header/);
    expect(() => inspectBlock(new Uint8Array(200))).toThrow(/bad magic/);
    const version = good.slice();
    version[4] = 9;
    expect(() => inspectBlock(version)).toThrow(/version 9/);
    expect(() => inspectBlock(good.subarray(0, good.length - 4))).toThrow(/payload is 1020 bytes, but shape 2x2x8x4 needs 1024/);
    const shape = good.slice();
    shape[12] = 4; // headDim 8 → 4: header no longer matches the payload length
    expect(() => inspectBlock(shape)).toThrow(/shape 2x2x4x4 needs 512/);
    expect(() => inspectBlock(good, { ...LAYOUT, numLayers: 3 })).toThrow(/shape 2x2x8x4 does not match the model's 3x2x8x4/);
    const tokens = good.slice();
    tokens[6] = 9;
    expect(() => inspectBlock(tokens)).toThrow(/claims 9 tokens/);
    const flipped = good.slice();
    flipped[flipped.length - 1]! ^= 0x40;
    expect(() => inspectBlock(flipped)).toThrow(/checksum mismatch/);
    try {
      inspectBlock(flipped);
    } catch (error) {
      expect(error).toMatchObject({ name: 'KvStoreError', code: 'invalid_argument' });
    }
  });
});
