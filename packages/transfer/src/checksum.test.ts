import { describe, expect, it } from 'vitest';
import { xxh32 } from './checksum.js';

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
// 1027 bytes, (i * 7 + 3) & 255: exercises stripes, words and the byte tail.
const pattern = Uint8Array.from({ length: 1027 }, (_, i) => (i * 7 + 3) & 255);

describe('xxh32', () => {
  it('matches libxxhash', () => {
    // Reference values computed with libxxhash's XXH32.
    expect(xxh32(text(''))).toBe(0x02cc5d05);
    expect(xxh32(text('a'))).toBe(0x550d7456);
    expect(xxh32(text('abc'))).toBe(0x32d153ff);
    expect(xxh32(text('Nobody inspects the spammish repetition'))).toBe(0xe2293b2f);
    expect(xxh32(pattern)).toBe(0x0ab6065a);
    expect(xxh32(pattern, 0x9747b28c)).toBe(0xe75ddaba);
  });

  it('gives the same answer at any alignment and length', () => {
    const backing = new Uint8Array(1100);
    for (const shift of [0, 1, 2, 3, 5]) {
      backing.set(pattern, shift);
      const view = backing.subarray(shift, shift + pattern.length);
      expect(xxh32(view)).toBe(0x0ab6065a);
      for (const len of [0, 3, 15, 16, 17, 63, 64, 65, 1026]) {
        expect(xxh32(view.subarray(0, len))).toBe(xxh32(pattern.slice(0, len)));
      }
    }
  });

  it('notices a flipped bit', () => {
    const a = pattern.slice();
    a[500] = (a[500] as number) ^ 1;
    expect(xxh32(a)).not.toBe(xxh32(pattern));
  });
});
