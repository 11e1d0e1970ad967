// ResidentKv's memory: a rebuild lays the one arena out anew in the buffers it already holds (fresh memory is
// slow to touch on some hosts), and rows copied from each other hold exactly their blocks' bytes.
import { BlockPool, type KvLayout } from '@pdserve/kv-cache';
import { describe, expect, it } from 'vitest';
import { gatherPast } from './kv-io';
import { ResidentKv } from './resident-kv';

const layout: KvLayout = { numLayers: 2, numKvHeads: 2, headDim: 4, blockSize: 4 };

function pool(blocks: number): BlockPool {
  const p = new BlockPool(layout, blocks);
  for (let i = 0; i < p.data.length; i++) p.data[i] = i + 1;
  return p;
}

/** A ResidentKv over a pool of `blocks` numbered blocks, and block tables of `n` blocks taken from it. */
function residentOver(blocks: number) {
  const p = pool(blocks);
  return { p, resident: new ResidentKv(layout, p.data), table: (n: number): number[] => Array.from({ length: n }, () => p.allocate()!) };
}

describe('ResidentKv', () => {
  it('rebuilds into the buffers it holds: one arena, not a second one per rebuild', () => {
    const { resident, table } = residentOver(16);
    const big = [
      { seqId: 1, pastLen: 12, blockTable: table(4) },
      { seqId: 2, pastLen: 9, blockTable: table(3) },
      { seqId: 3, pastLen: 10, blockTable: table(3) },
    ];
    const first = resident.prepare(big, 1);
    const buffers = first.past.map((kv) => kv.key.buffer);
    // The batch changes whole (its rows leave, fewer and shorter ones join an empty batch), then a row longer
    // than the columns in use joins: two rebuilds, each laid out in the same buffers.
    const small = [{ seqId: 4, pastLen: 5, blockTable: table(2) }];
    const second = resident.prepare(small, 1);
    expect(second.gatheredTokens).toBe(5);
    const same = (b: typeof first): boolean[] => b.past.map((kv, l) => kv.key.buffer === buffers[l]);
    expect(same(second)).toEqual(buffers.map(() => true));
    const third = resident.prepare([small[0]!, { seqId: 5, pastLen: 11, blockTable: table(3) }], 1);
    expect(third.gatheredTokens).toBe(5 + 11);
    expect(same(third)).toEqual(buffers.map(() => true));
  });

  it('lays a wider arena out in the buffers it holds when the context outgrows the headroom a little', () => {
    const { resident, table } = residentOver(256);
    const a = { seqId: 1, pastLen: 400, blockTable: table(100) };
    const first = resident.prepare([a], 1);
    const buffers = first.past.map((kv) => kv.key.buffer);
    // A row longer than the columns in use joins: the arena is laid out wider, a few columns more than its headroom.
    const wider = resident.prepare([a, { seqId: 2, pastLen: first.width + 8, blockTable: table(Math.ceil((first.width + 8) / 4)) }], 1);
    expect(wider.width).toBeGreaterThan(first.width);
    expect(wider.gatheredTokens).toBe(400 + first.width + 8);
    expect(wider.past.map((kv, l) => kv.key.buffer === buffers[l])).toEqual(buffers.map(() => true));
  });

  it('a batch growing past the rows it was laid out for copies in only the rows that join, where its buffers hold them', () => {
    const { p, resident, table } = residentOver(64);
    const first = [
      { seqId: 1, pastLen: 12, blockTable: table(4) },
      { seqId: 2, pastLen: 10, blockTable: table(4) },
    ];
    // Laid out for 2 rows and headroom (4), its buffers a quarter larger: room for 5 rows at this width.
    expect(resident.prepare(first, 1).gatheredTokens).toBe(22);
    const joining = [
      { seqId: 3, pastLen: 9, blockTable: table(4) },
      { seqId: 4, pastLen: 11, blockTable: table(4) },
      { seqId: 5, pastLen: 12, blockTable: table(4) },
    ];
    const grown = resident.prepare([...first, ...joining], 1);
    expect(grown.gatheredTokens).toBe(9 + 11 + 12);
    // Each row holds its own blocks' bytes, right-aligned at the 12 columns in use.
    const floats = layout.numKvHeads * grown.width * layout.headDim;
    [...first, ...joining].forEach((row, i) => {
      const slot = grown.slotOf[i]!;
      const alone = gatherPast(p.data, layout, [{ blockTable: row.blockTable, len: row.pastLen }], 12);
      const D = layout.headDim;
      const at = slot * floats + grown.width * D; // the second head
      expect([...grown.past[1]!.value.subarray(at + (12 - row.pastLen) * D, at + 12 * D)]).toEqual([
        ...alone[1]!.value.subarray((12 + 12 - row.pastLen) * D, 2 * 12 * D),
      ]);
    });
  });

  it('rows joining together over a shared prefix hold what each row gathered alone holds', () => {
    const p = pool(16);
    const shared = [p.allocate()!, p.allocate()!];
    const rows = [
      { seqId: 1, pastLen: 10, blockTable: [...shared, p.allocate()!] },
      { seqId: 2, pastLen: 13, blockTable: [...shared, p.allocate()!, p.allocate()!] },
      { seqId: 3, pastLen: 6, blockTable: [shared[0]!, p.allocate()!] },
    ];
    const batch = new ResidentKv(layout, p.data).prepare(rows, 1);
    const floats = layout.numKvHeads * batch.width * layout.headDim; // a row's, per layer and K or V
    rows.forEach((row, i) => {
      const slot = batch.slotOf[i]!;
      // The row alone, right-aligned at the same columns in use (the longest past, 13): its own columns compared.
      const alone = gatherPast(p.data, layout, [{ blockTable: row.blockTable, len: row.pastLen }], 13);
      const D = layout.headDim;
      for (let l = 0; l < layout.numLayers; l++) {
        for (let h = 0; h < layout.numKvHeads; h++) {
          for (const kv of ['key', 'value'] as const) {
            const at = slot * floats + h * batch.width * D;
            const got = batch.past[l]![kv].subarray(at + (13 - row.pastLen) * D, at + 13 * D);
            expect([...got]).toEqual([...alone[l]![kv].subarray((h * 13 + 13 - row.pastLen) * D, (h + 1) * 13 * D)]);
          }
        }
      }
      expect([...batch.pastMask.subarray(slot * batch.width, slot * batch.width + 13)]).toEqual(
        Array.from({ length: 13 }, (_, c) => (c >= 13 - row.pastLen ? 1 : 0)),
      );
    });
  });
});
