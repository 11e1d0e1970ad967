import { describe, expect, it } from 'vitest';
import { BlockAssembly } from './assembly';
import {
  BATCH_HEADER_BYTES,
  BatchReader,
  FrameError,
  decodeRequest,
  encodeAdmitted,
  encodeBatchHead,
  encodePullRequest,
} from './frame-codec';
import { SlabPool } from './slab-pool';
import { batchStream, makeBlocks } from './testkit';
import type { KvBlock } from './types';

const token = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
// Odd sizes: blocks lie back to back at unaligned offsets.
const blocks: KvBlock[] = [...makeBlocks(3, 100, 1), ...makeBlocks(1, 64, 2), ...makeBlocks(2, 7, 3)];

function assemblyFor(bs: readonly KvBlock[]): BlockAssembly {
  return new BlockAssembly(
    bs.map((b) => ({ hash: b.hash, length: b.data.byteLength })),
    new SlabPool(0),
  );
}

/** Feeds `bytes` the way a socket with a user buffer does: into next(), at most `step` bytes per read. */
function readInPlace(reader: BatchReader, bytes: Uint8Array, step: number): boolean {
  let at = 0;
  let done = false;
  while (at < bytes.byteLength) {
    const into = reader.next();
    const n = Math.min(into.byteLength, step, bytes.byteLength - at);
    into.set(bytes.subarray(at, at + n));
    at += n;
    done = reader.advance(n);
  }
  return done;
}

function expectBlocks(a: BlockAssembly, bs: readonly KvBlock[]): void {
  expect(a.complete).toBe(true);
  expect(a.blocks().map((b) => Buffer.from(b.data))).toEqual(bs.map((b) => Buffer.from(b.data)));
}

describe('tcp batch codec', () => {
  it('reads batches straight into the slab, whatever the read sizes', () => {
    for (const perBatch of [1, 2, 6]) {
      const bytes = batchStream(token, blocks, perBatch);
      for (const step of [1, 7, 24, 100, 1 << 20]) {
        const a = assemblyFor(blocks);
        expect(readInPlace(new BatchReader(token, a), bytes, step)).toBe(true);
        expectBlocks(a, blocks);
      }
    }
  });

  it('takes bytes that landed in a scratch buffer, split at every boundary', () => {
    const bytes = batchStream(token, blocks, 4);
    for (let cut = 0; cut <= bytes.byteLength; cut++) {
      const a = assemblyFor(blocks);
      const r = new BatchReader(token, a);
      r.feed(bytes.subarray(0, cut));
      r.feed(bytes.subarray(cut));
      expectBlocks(a, blocks);
    }
  });

  it('lays payloads out back to back, as the slab holds them', () => {
    const bytes = batchStream(token, blocks, blocks.length);
    const payload = blocks.reduce((n, b) => n + b.data.byteLength, 0);
    expect(bytes.byteLength).toBe(BATCH_HEADER_BYTES + 4 * blocks.length + payload);
  });

  it('rejects a wrong checksum, a bad magic, another token, a batch out of order or of the wrong size', () => {
    const tryRead = (bytes: Uint8Array, tok = token): unknown => {
      try {
        new BatchReader(tok, assemblyFor(blocks)).feed(bytes);
        return null;
      } catch (e) {
        return e;
      }
    };
    expect(tryRead(batchStream(token, blocks, 2, 3))).toMatchObject({ code: 'CHECKSUM_MISMATCH' });
    const badMagic = batchStream(token, blocks, 2).slice();
    badMagic[0] = 0;
    expect(tryRead(badMagic)).toBeInstanceOf(FrameError);
    expect(tryRead(batchStream(token, blocks, 2), Uint8Array.from([8, 7, 6, 5, 4, 3, 2, 1]))).toBeInstanceOf(FrameError);
    const skipped = encodeBatchHead(token, 1, [0], 100);
    expect(tryRead(skipped)).toMatchObject({ code: 'PROTOCOL' });
    const wrongSize = encodeBatchHead(token, 0, [0], 99);
    expect(tryRead(wrongSize)).toMatchObject({ code: 'PROTOCOL' });
    expect(tryRead(encodeBatchHead(token, 0, [], 0))).toBeInstanceOf(FrameError);
  });

  it('refuses bytes after the last batch', () => {
    const bytes = batchStream(token, blocks, 3);
    const r = new BatchReader(token, assemblyFor(blocks));
    expect(() => r.feed(Buffer.concat([bytes, Uint8Array.from([1])]))).toThrow(FrameError);
  });

  it('encodes and checks pull requests and admissions', () => {
    expect(decodeRequest(encodePullRequest(token))).toEqual({ kind: 'pull', token });
    expect(decodeRequest(encodeAdmitted(token))).toEqual({ kind: 'admitted', token });
    const bad = encodePullRequest(token);
    bad[1] = 9;
    expect(() => decodeRequest(bad)).toThrow(FrameError);
    expect(() => decodeRequest(encodePullRequest(token).subarray(0, 15))).toThrow(FrameError);
    const nonzero = encodeAdmitted(token);
    nonzero[5] = 1;
    expect(() => decodeRequest(nonzero)).toThrow(FrameError);
  });
});
