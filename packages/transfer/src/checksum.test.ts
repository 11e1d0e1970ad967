import { describe, expect, it } from 'vitest';
import { blockChecksum } from './checksum';

const text = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('blockChecksum', () => {
  it('is the standard CRC-32 (IEEE)', () => {
    expect(blockChecksum(text(''))).toBe(0);
    expect(blockChecksum(text('123456789'))).toBe(0xcbf43926); // the CRC-32 check value
    expect(blockChecksum(text('The quick brown fox jumps over the lazy dog'))).toBe(0x414fa339);
  });

  it('gives the same answer for a view at any offset', () => {
    const backing = Uint8Array.from({ length: 1100 }, (_, i) => (i * 7 + 3) & 255);
    const want = blockChecksum(backing.slice(3, 1030));
    expect(blockChecksum(backing.subarray(3, 1030))).toBe(want);
  });
});
