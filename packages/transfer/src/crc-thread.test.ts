// CRCs checked on the worker thread: a block counts verified only once its CRC came back and matched, so
// a large tcp transfer is never complete (and hands out no block) before then, and a mismatch found
// off-thread fails it.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { BlockAssembly, OFF_THREAD_MIN_BYTES } from './assembly';
import { blockChecksum } from './checksum';
import { CrcThread } from './crc-thread';
import { SlabPool } from './slab-pool';

const BLOCK = 1024 * 1024;
const COUNT = OFF_THREAD_MIN_BYTES / BLOCK + 2;

function received(crcs: CrcThread): { assembly: BlockAssembly; sums: number[]; verified: number[] } {
  const descriptors = Array.from({ length: COUNT }, (_, i) => ({ hash: i.toString(16).padStart(16, '0'), length: BLOCK }));
  const verified: number[] = [];
  const assembly = new BlockAssembly(descriptors, new SlabPool(0), undefined, (i) => verified.push(i), crcs);
  const [region] = assembly.batchRegions(0, COUNT, COUNT * BLOCK);
  (region as Uint8Array).set(randomBytes(COUNT * BLOCK));
  return { assembly, sums: descriptors.map((_, i) => blockChecksum(assembly.view(i))), verified };
}

describe('the CRC thread', () => {
  it('computes what crc32 computes, over spans of a SharedArrayBuffer', async () => {
    const sab = new SharedArrayBuffer(3 * 4096);
    new Uint8Array(sab).set(randomBytes(3 * 4096));
    const got = await new CrcThread().crcs(sab, [0, 4096, 5000, 3000, 4096 * 2, 4096]);
    expect([...got]).toEqual([
      blockChecksum(new Uint8Array(sab, 0, 4096)),
      blockChecksum(new Uint8Array(sab, 5000, 3000)),
      blockChecksum(new Uint8Array(sab, 8192, 4096)),
    ]);
  });

  it('a large transfer is complete, and hands out its blocks, only once every CRC came back and matched', async () => {
    const { assembly, sums, verified } = received(new CrcThread());
    sums.forEach((sum, i) => assembly.acceptBlock(i, sum));
    assembly.flush();
    // Every byte is in, nothing verified yet: not complete, no blocks.
    expect(assembly.complete).toBe(false);
    expect(() => assembly.blocks()).toThrow();
    const settled = assembly.verification();
    expect(settled).not.toBeNull();
    await settled;
    expect(assembly.complete).toBe(true);
    expect(verified).toEqual(sums.map((_, i) => i));
    expect(assembly.blocks().map((b) => b.checksum)).toEqual(sums);
  });

  it('a mismatch found off-thread fails the transfer: its verification rejects and no block is handed out', async () => {
    const { assembly, sums, verified } = received(new CrcThread());
    sums.forEach((sum, i) => assembly.acceptBlock(i, i === 3 ? sum ^ 0x100 : sum));
    assembly.flush();
    await expect(assembly.verification()).rejects.toMatchObject({ code: 'CHECKSUM_MISMATCH' });
    expect(assembly.complete).toBe(false);
    expect(verified).not.toContain(3);
    expect(() => assembly.blocks()).toThrow();
    // Whatever arrives next is refused.
    expect(() => assembly.acceptBlock(0, sums[0] as number)).toThrow();
  });
});
