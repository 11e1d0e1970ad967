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
});
