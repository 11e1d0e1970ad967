/** The shape of KV data for one model, and of one block of it. */
export interface KvLayout {
  readonly numLayers: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  /** Tokens per block. */
  readonly blockSize: number;
}

/**
 * A block is stored block-major so that it is one contiguous run of floats (zero-copy export):
 * [layer][k=0|v=1][kvHead][slot][headDim].
 */
export function blockFloats(l: KvLayout): number {
  return l.numLayers * 2 * l.numKvHeads * l.blockSize * l.headDim;
}

export function blockBytes(l: KvLayout): number {
  return blockFloats(l) * 4;
}

/** Float offset, inside a block, of the run [slot 0 .. blockSize) of one (layer, k|v, head). */
export function headRunOffset(l: KvLayout, layer: number, kv: 0 | 1, head: number): number {
  return ((layer * 2 + kv) * l.numKvHeads + head) * l.blockSize * l.headDim;
}
