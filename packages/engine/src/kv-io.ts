import { headRunOffset, type BlockId, type KvLayout } from '@pdserve/kv-cache';
import type { LayerKv } from '@pdserve/model';

/** Where a row's tokens live: block_table[i] holds positions [i*blockSize, (i+1)*blockSize). */
export interface RowBlocks {
  readonly blockTable: readonly BlockId[];
}

/**
 * Copies each row's first `len` tokens of KV out of the block pool into a [batch, kvHeads, width, headDim]
 * tensor per layer, right-aligned (left-padded with zeros), as the model's `past` input wants: into fresh
 * buffers, or into the front of `into`'s (per layer, at least that large) when given.
 */
export function gatherPast(
  pool: Float32Array,
  layout: KvLayout,
  rows: readonly (RowBlocks & { readonly len: number })[],
  width: number,
  into?: readonly LayerKv[],
): LayerKv[] {
  const { numLayers, numKvHeads: H, headDim: D } = layout;
  const floats = rows.length * H * width * D;
  const out =
    into === undefined
      ? Array.from({ length: numLayers }, () => ({ key: new Float32Array(floats), value: new Float32Array(floats) }))
      : into.map((kv) => ({ key: kv.key.subarray(0, floats), value: kv.value.subarray(0, floats) }));
  if (into !== undefined)
    rows.forEach((row, b) => {
      // Reused buffers hold an earlier batch: a short row's padding is zeroed, as fresh ones are.
      const pad = (width - row.len) * D;
      if (pad > 0)
        for (const { key, value } of out)
          for (let h = 0; h < H; h++) {
            const at = (b * H + h) * width * D;
            key.fill(0, at, at + pad);
            value.fill(0, at, at + pad);
          }
    });
  gatherRows(pool, layout, rows, out, 0, width);
  return out;
}

/**
 * gatherRow for each of `rows`, into slots `firstSlot`, `firstSlot` + 1, ...: a row whose leading blocks are
 * an earlier row's of the same call (a prefix both hold in the cache: the same blocks, so the same bytes)
 * copies those tokens' columns from that row, one run per layer and head, instead of block by block from
 * the pool; only the rest comes from its blocks. Rows of a shared prompt prefix are the common case of a
 * batch formed at once, and the copy from the pool costs about twice the bytes' memcpy in per-block calls.
 */
export function gatherRows(
  pool: Float32Array,
  layout: KvLayout,
  rows: readonly (RowBlocks & { readonly len: number })[],
  dst: readonly LayerKv[],
  firstSlot: number,
  width: number,
  stride = width,
): void {
  const bs = layout.blockSize;
  rows.forEach((row, i) => {
    let shared = 0;
    let like = -1;
    for (let j = 0; j < i; j++) {
      const other = rows[j]!;
      const most = Math.floor(Math.min(row.len, other.len) / bs);
      let k = 0;
      while (k < most && other.blockTable[k] === row.blockTable[k]) k++;
      if (k * bs > shared) {
        shared = k * bs;
        like = j;
      }
    }
    if (like >= 0) copyColumns(dst, layout, stride, firstSlot + like, width - rows[like]!.len, firstSlot + i, width - row.len, shared);
    gatherRow(pool, layout, row, dst, firstSlot + i, width, shared, stride);
  });
}

/** Copies `n` columns of every layer's K and V from row `fromSlot` at column `fromCol` to row `toSlot` at `toCol`. */
function copyColumns(
  dst: readonly LayerKv[],
  layout: KvLayout,
  stride: number,
  fromSlot: number,
  fromCol: number,
  toSlot: number,
  toCol: number,
  n: number,
): void {
  const { numKvHeads: H, headDim: D } = layout;
  for (const { key, value } of dst)
    for (let h = 0; h < H; h++) {
      const from = ((fromSlot * H + h) * stride + fromCol) * D;
      const to = ((toSlot * H + h) * stride + toCol) * D;
      key.copyWithin(to, from, from + n * D);
      value.copyWithin(to, from, from + n * D);
    }
}

/**
 * Copies one row's first `len` tokens of KV from its blocks into batch row `slot` of `dst` (per layer,
 * [rows, kvHeads, stride, headDim]), right-aligned at column `width`; from token `from` on (a multiple of
 * the block size), the ones before it being there already. Other columns are not touched.
 */
export function gatherRow(
  pool: Float32Array,
  layout: KvLayout,
  row: RowBlocks & { readonly len: number },
  dst: readonly LayerKv[],
  slot: number,
  width: number,
  from = 0,
  stride = width,
): void {
  const { numLayers, numKvHeads: H, headDim: D, blockSize: bs } = layout;
  const blockFloats = numLayers * 2 * H * bs * D;
  const { blockTable, len } = row;
  const pad = width - len;
  if (pad < 0) throw new Error(`a row of ${len} tokens does not fit in ${width} columns`);
  for (let t0 = from; t0 < len; t0 += bs)
    copyBlock(pool, blockTable[t0 / bs]! * blockFloats, layout, Math.min(bs, len - t0), dst, slot, stride, pad + t0);
}

/**
 * Copies the first `n` tokens of the block at `src[base...]` (block layout) into columns [col, col + n)
 * of batch row `slot` of `dst` (per layer, [rows, kvHeads, width, headDim]).
 */
export function copyBlock(
  src: Float32Array,
  base: number,
  layout: KvLayout,
  n: number,
  dst: readonly LayerKv[],
  slot: number,
  width: number,
  col: number,
): void {
  const { numLayers, numKvHeads: H, headDim: D } = layout;
  for (let l = 0; l < numLayers; l++) {
    const { key, value } = dst[l]!;
    for (let h = 0; h < H; h++) {
      const at = ((slot * H + h) * width + col) * D;
      const ks = base + headRunOffset(layout, l, 0, h);
      const vs = base + headRunOffset(layout, l, 1, h);
      key.set(src.subarray(ks, ks + n * D), at);
      value.set(src.subarray(vs, vs + n * D), at);
    }
  }
}

/**
 * Writes the KV of each row's new tokens from a forward's new KV ([batch, kvHeads, total, headDim], each
 * row's new tokens at the right end, padding left of them) into the row's blocks at positions
 * [pastLen, pastLen + count).
 */
export function scatterNew(
  pool: Float32Array,
  layout: KvLayout,
  kv: readonly LayerKv[],
  total: number,
  rows: readonly (RowBlocks & { readonly pastLen: number; readonly count: number })[],
): void {
  const { numLayers, numKvHeads: H, headDim: D, blockSize: bs } = layout;
  const blockFloats = numLayers * 2 * H * bs * D;
  for (let b = 0; b < rows.length; b++) {
    const { blockTable, pastLen, count } = rows[b]!;
    const firstCol = total - count;
    let i = 0;
    while (i < count) {
      const pos = pastLen + i;
      const slot = pos % bs;
      const n = Math.min(bs - slot, count - i);
      const base = blockTable[Math.floor(pos / bs)]! * blockFloats;
      for (let l = 0; l < numLayers; l++) {
        const { key, value } = kv[l]!;
        for (let h = 0; h < H; h++) {
          const src = ((b * H + h) * total + firstCol + i) * D;
          const kd = base + headRunOffset(layout, l, 0, h) + slot * D;
          const vd = base + headRunOffset(layout, l, 1, h) + slot * D;
          pool.set(key.subarray(src, src + n * D), kd);
          pool.set(value.subarray(src, src + n * D), vd);
        }
      }
      i += n;
    }
  }
}
