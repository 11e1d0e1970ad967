// A transfer being received: the blocks announced in Begin, filled in by whichever transport carries
// the bytes, each verified against its checksum as it completes. Only a complete assembly yields blocks.
// All blocks live in one slab from the receiver's pool, back to back: the layout a tcp batch's payload
// has on the wire. Or, where the application placed them, each in a buffer of its own that the
// application keeps (a tcp batch's payload is then read block by block, or many at once where those
// buffers are neighbours in memory).
import { blockChecksum } from './checksum.js';
import { TransferError } from './errors.js';
import type { BatchTarget } from './frame-codec.js';
import type { SlabPool } from './slab-pool.js';
import type { KvBlock } from './types.js';
import type { BlockDescriptor } from './wire.js';

export class BlockAssembly implements BatchTarget {
  readonly totalBytes: number;
  /** Every block's bytes live in one allocation per transfer: one ArrayBuffer instead of thousands. */
  private slab: ArrayBuffer | null;
  /** Or each block in the application's buffer. */
  private placed: readonly Uint8Array[] | null;
  private readonly offsets: Float64Array;
  private readonly data: (Uint8Array | null)[];
  private readonly filled: Uint32Array; // bytes received per block
  private readonly verified: Uint8Array; // 1 once a block is whole and its checksum matched
  private readonly checksums: Uint32Array; // each verified block's
  private verifiedCount = 0;
  /** tcp: the block the next batch must start at. */
  private nextBatch = 0;
  private discarded = false;

  constructor(
    private readonly descriptors: readonly BlockDescriptor[],
    private readonly pool: SlabPool,
    placed?: readonly Uint8Array[],
    /** Told of each block once it is whole and verified; what it throws refuses the transfer. */
    private readonly onVerified?: (index: number, block: KvBlock) => void,
  ) {
    this.data = new Array<Uint8Array | null>(descriptors.length).fill(null);
    this.filled = new Uint32Array(descriptors.length);
    this.verified = new Uint8Array(descriptors.length);
    this.checksums = new Uint32Array(descriptors.length);
    this.offsets = new Float64Array(descriptors.length);
    let total = 0;
    let at = 0;
    descriptors.forEach((d, i) => {
      this.offsets[i] = at;
      at += d.length;
      total += d.length;
    });
    this.totalBytes = total;
    if (placed !== undefined) {
      const fits = placed.length === descriptors.length && placed.every((b, i) => b.byteLength === descriptors[i]?.length) && disjoint(placed);
      if (!fits) throw new TransferError('REFUSED', 'the receiving application placed the blocks in buffers that do not match them');
    }
    this.placed = placed ?? null;
    this.slab = placed === undefined ? pool.take(at) : null;
  }

  get blockCount(): number {
    return this.descriptors.length;
  }

  get verifiedBlocks(): number {
    return this.verifiedCount;
  }

  get complete(): boolean {
    return this.verifiedCount === this.descriptors.length;
  }

  /** tcp: where a batch of blocks [first, first + count) is read into: its slab region, or each block's buffer. */
  batchRegions(first: number, count: number, payloadBytes: number): Uint8Array[] {
    if (this.discarded) throw new TransferError('ABORTED', 'transfer was discarded');
    if (first !== this.nextBatch || count <= 0 || first + count > this.descriptors.length) {
      throw new TransferError('PROTOCOL', `batch of blocks ${first}..${first + count - 1} out of order (expected ${this.nextBatch}, ${this.descriptors.length} in all)`);
    }
    const last = first + count - 1;
    const start = this.offsets[first] as number;
    const end = (this.offsets[last] as number) + (this.descriptors[last] as BlockDescriptor).length;
    if (payloadBytes !== end - start) {
      throw new TransferError('PROTOCOL', `batch at block ${first}: ${payloadBytes} payload bytes, announced ${end - start}`);
    }
    this.nextBatch = first + count;
    if (this.placed !== null) return coalesce(this.placed.slice(first, first + count));
    return [new Uint8Array(this.slab as ArrayBuffer, start, end - start)];
  }

  blockLength(index: number): number {
    return this.descriptor(index).length;
  }

  /** tcp: block `index` arrived whole where batchRegions put it; it is checked against the sender's checksum. */
  acceptBlock(index: number, checksum: number): void {
    this.acceptWhole(index, this.view(index), checksum);
  }

  /** Block `index` arrived whole, in its slab view (tcp, shm). */
  acceptWhole(index: number, bytes: Uint8Array, checksum: number): void {
    const d = this.descriptor(index);
    if (bytes.byteLength !== d.length) {
      throw new TransferError('PROTOCOL', `block ${index}: ${bytes.byteLength} bytes, announced ${d.length}`);
    }
    const held = this.data[index];
    if (held !== null && held !== bytes) throw new TransferError('PROTOCOL', `block ${index} sent twice`);
    if (this.verified[index] === 1) throw new TransferError('PROTOCOL', `block ${index} sent twice`);
    this.data[index] = bytes;
    this.filled[index] = bytes.byteLength;
    this.verify(index, checksum);
  }

  /** A slice of block `index` at `offset` (grpc); slices of a block come in order. */
  acceptSlice(index: number, offset: number, bytes: Uint8Array, checksum: number): void {
    const d = this.descriptor(index);
    if (this.verified[index] === 1) throw new TransferError('PROTOCOL', `block ${index} sent twice`);
    if (offset !== this.filled[index] || offset + bytes.byteLength > d.length) {
      throw new TransferError('PROTOCOL', `block ${index}: slice at ${offset}+${bytes.byteLength} out of order`);
    }
    let buf = this.data[index];
    if (buf === null) {
      buf = this.view(index);
      this.data[index] = buf;
    }
    buf.set(bytes, offset);
    this.filled[index] = offset + bytes.byteLength;
    if (this.filled[index] === d.length) this.verify(index, checksum);
  }

  /** The verified blocks in order; throws unless complete. */
  blocks(): KvBlock[] {
    if (!this.complete || this.discarded) throw new TransferError('PROTOCOL', 'transfer is not complete');
    return this.descriptors.map((d, i) => ({ hash: d.hash, data: this.data[i] as Uint8Array, checksum: this.checksums[i] as number }));
  }

  /**
   * Returns the slab to the pool for the next transfer. Only when no write into it can still be
   * under way, and nobody holds the blocks any more.
   */
  recycle(): void {
    const slab = this.slab; // placed blocks are the application's
    this.discard();
    if (slab !== null) this.pool.give(slab);
  }

  /** Drops every byte received; the assembly accepts nothing afterwards. */
  discard(): void {
    this.discarded = true;
    this.slab = null;
    this.placed = null;
    this.data.fill(null);
  }

  /** Where block `index` lives (for tcp frames, gRPC slices and shm reads alike). */
  view(index: number): Uint8Array {
    const d = this.descriptor(index);
    if (this.placed !== null) return this.placed[index] as Uint8Array;
    return new Uint8Array(this.slab as ArrayBuffer, this.offsets[index], d.length);
  }

  private descriptor(index: number): BlockDescriptor {
    if (this.discarded) throw new TransferError('ABORTED', 'transfer was discarded');
    const d = this.descriptors[index];
    if (d === undefined) throw new TransferError('PROTOCOL', `block index ${index} out of range`);
    return d;
  }

  private verify(index: number, checksum: number): void {
    const actual = blockChecksum(this.data[index] as Uint8Array);
    if (actual !== checksum >>> 0) {
      throw new TransferError('CHECKSUM_MISMATCH',
        `block ${index} (${this.descriptors[index]?.hash}): checksum ${hex(actual)}, sender said ${hex(checksum)}`);
    }
    this.verified[index] = 1;
    this.checksums[index] = actual;
    this.verifiedCount++;
    if (this.onVerified === undefined) return;
    try {
      this.onVerified(index, { hash: (this.descriptors[index] as BlockDescriptor).hash, data: this.data[index] as Uint8Array, checksum: actual });
    } catch (e) {
      throw new TransferError('REFUSED', e instanceof Error ? e.message : String(e), { cause: e });
    }
  }
}

function hex(n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0');
}

/** Views that follow one another in one buffer, merged: one read fills them all. */
function coalesce(views: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const v of views) {
    const last = out.at(-1);
    if (last !== undefined && last.buffer === v.buffer && last.byteOffset + last.byteLength === v.byteOffset) {
      out[out.length - 1] = new Uint8Array(last.buffer, last.byteOffset, last.byteLength + v.byteLength);
    } else {
      out.push(v);
    }
  }
  return out;
}

/** No two views share a byte. */
function disjoint(views: readonly Uint8Array[]): boolean {
  const byBuffer = new Map<ArrayBufferLike, Uint8Array[]>();
  for (const v of views) {
    const list = byBuffer.get(v.buffer);
    if (list === undefined) byBuffer.set(v.buffer, [v]);
    else list.push(v);
  }
  for (const list of byBuffer.values()) {
    list.sort((a, b) => a.byteOffset - b.byteOffset);
    for (let i = 1; i < list.length; i++) {
      const prev = list[i - 1] as Uint8Array;
      if (prev.byteOffset + prev.byteLength > (list[i] as Uint8Array).byteOffset) return false;
    }
  }
  return true;
}
