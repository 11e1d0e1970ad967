import { BlockPool, type KvLayout } from '@pdserve/kv-cache';
import { describe, expect, it } from 'vitest';
import { gatherPast } from './kv-io';

describe('gatherPast', () => {
  it('into reused buffers gives exactly what fresh ones give: the rows right-aligned, a short row padded with zeros', () => {
    const layout: KvLayout = { numLayers: 2, numKvHeads: 2, headDim: 4, blockSize: 4 };
    const pool = new BlockPool(layout, 8);
    for (let i = 0; i < pool.data.length; i++) pool.data[i] = 1 + (i % 97);
    const rows = [
      { blockTable: [pool.allocate()!, pool.allocate()!], len: 6 },
      { blockTable: [pool.allocate()!], len: 3 },
    ];
    const width = 7;
    const fresh = gatherPast(pool.data, layout, rows, width);
    // Buffers larger than needed, holding an earlier batch's values.
    const used = Array.from({ length: layout.numLayers }, () => ({
      key: new Float32Array(200).fill(Number.NaN),
      value: new Float32Array(200).fill(-5),
    }));
    const reused = gatherPast(pool.data, layout, rows, width, used);
    expect(reused.map((kv) => kv.key.length)).toEqual(fresh.map((kv) => kv.key.length));
    expect(reused.map((kv) => [...kv.key, ...kv.value])).toEqual(fresh.map((kv) => [...kv.key, ...kv.value]));
    expect(reused[0]!.key.buffer).toBe(used[0]!.key.buffer);
    // The short row's first 4 columns of each head are padding.
    expect([...fresh[1]!.value.subarray(2 * width * 4, 2 * width * 4 + 16)]).toEqual(new Array(16).fill(0));
  });

  it('rows sharing leading blocks copy them from an earlier row: the same bytes as each row gathered alone', () => {
    const layout: KvLayout = { numLayers: 3, numKvHeads: 2, headDim: 4, blockSize: 4 };
    const pool = new BlockPool(layout, 16);
    for (let i = 0; i < pool.data.length; i++) pool.data[i] = i + 1; // every float of the pool distinct
    const [a, b, c, d, e, f, g] = Array.from({ length: 7 }, () => pool.allocate()!);
    const rows = [
      { blockTable: [a!, b!, c!], len: 11 }, // nothing before it to share
      { blockTable: [a!, b!, d!], len: 12 }, // a and b from row 0, at another alignment
      { blockTable: [a!, b!, d!, e!], len: 14 }, // a, b and d from row 1: the longest run
      { blockTable: [f!, b!], len: 8 }, // b is shared, but not leading: all from blocks
      { blockTable: [a!, g!], len: 5 }, // a from row 0; its partial block g from the pool
      { blockTable: [a!], len: 3 }, // a's block is not full in this row: from the pool
    ];
    const width = 15;
    const together = gatherPast(pool.data, layout, rows, width);
    const floats = 2 * width * 4; // a row's, per layer and K or V
    rows.forEach((row, r) => {
      const alone = gatherPast(pool.data, layout, [row], width);
      for (let l = 0; l < layout.numLayers; l++) {
        expect([...together[l]!.key.subarray(r * floats, (r + 1) * floats)]).toEqual([...alone[l]!.key]);
        expect([...together[l]!.value.subarray(r * floats, (r + 1) * floats)]).toEqual([...alone[l]!.value]);
      }
    });
  });
});
