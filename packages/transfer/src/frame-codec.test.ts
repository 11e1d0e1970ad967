import { describe, expect, it } from 'vitest';
import { FRAME_HEADER_BYTES, FrameDecoder, FrameError, encodeFrameHeader, tokenWords, type FrameHeader } from './frame-codec.js';

const token = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]);

function stream(payloads: readonly Uint8Array[]): Uint8Array {
  const total = payloads.reduce((n, p) => n + FRAME_HEADER_BYTES + p.byteLength, 0);
  const out = new Uint8Array(total);
  let at = 0;
  payloads.forEach((p, i) => {
    encodeFrameHeader(out.subarray(at, at + FRAME_HEADER_BYTES), token, i, p.byteLength, 1000 + i);
    out.set(p, at + FRAME_HEADER_BYTES);
    at += FRAME_HEADER_BYTES + p.byteLength;
  });
  return out;
}

function decodeAll(bytes: Uint8Array, cuts: readonly number[]): { headers: FrameHeader[]; payloads: Uint8Array[] } {
  const headers: FrameHeader[] = [];
  const payloads: Uint8Array[] = [];
  const d = new FrameDecoder({
    onHeader: (h) => new Uint8Array(h.length),
    onFrame: (h, p) => {
      headers.push(h);
      payloads.push(p);
    },
  });
  let prev = 0;
  for (const c of [...cuts, bytes.byteLength]) {
    d.push(bytes.subarray(prev, c));
    prev = c;
  }
  expect(d.idle).toBe(true);
  return { headers, payloads };
}

describe('frame codec', () => {
  const payloads = [Uint8Array.from([9, 8, 7]), new Uint8Array(100).fill(5), Uint8Array.from([1])];
  const bytes = stream(payloads);

  it('decodes frames split at every possible boundary', () => {
    for (let cut = 0; cut <= bytes.byteLength; cut++) {
      const { headers, payloads: got } = decodeAll(bytes, [cut]);
      expect(got).toEqual(payloads);
      expect(headers.map((h) => [h.blockIndex, h.length, h.checksum])).toEqual([[0, 3, 1000], [1, 100, 1001], [2, 1, 1002]]);
      expect(headers[0]?.tokenLo).toBe(tokenWords(token).lo);
      expect(headers[0]?.tokenHi).toBe(tokenWords(token).hi);
    }
  });

  it('decodes a stream fed one byte at a time', () => {
    const cuts = Array.from({ length: bytes.byteLength - 1 }, (_, i) => i + 1);
    expect(decodeAll(bytes, cuts).payloads).toEqual(payloads);
  });

  it('rejects a bad magic', () => {
    const broken = bytes.slice();
    broken[0] = 0;
    expect(() => decodeAll(broken, [])).toThrow(FrameError);
  });
});
