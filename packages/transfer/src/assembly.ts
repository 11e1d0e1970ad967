// A transfer being received: the blocks announced in Begin, filled in by whichever transport carries
// the bytes, each verified against its checksum as it completes. Only a complete assembly yields blocks.
// The blocks live back to back in slabs from the receiver's pool, the layout a tcp batch's payload has on
// the wire; a slab (a segment of at most SEGMENT_BYTES) is taken only once its first block starts to
// arrive, so a Begin that announces a gigabyte costs nothing until the bytes come. Or, where the application placed them, each in a buffer of its own that the
// application keeps (a tcp batch's payload is then read block by block, or many at once where those
// buffers are neighbours in memory).
import { blockChecksum } from './checksum';
import { TransferError } from './errors';
import type { BatchTarget } from './frame-codec';
import type { SlabPool } from './slab-pool';
import type { KvBlock } from './types';
import type { BlockDescriptor } from './wire';

/** Receive memory is taken in segments of at most this much (a larger block gets one of its own). */
export const SEGMENT_BYTES = 32 * 1024 * 1024;

export class BlockAssembly implements BatchTarget {
  readonly totalBytes: number;
  /** Blocks' bytes live in few allocations (one ArrayBuffer per segment instead of thousands), each taken when needed. */
  private segments: (ArrayBuffer | null)[] = [];
  private readonly segmentBytes: number[] = [];
  /** Each block's segment; `offsets` are within it. */
  private readonly segmentOf: Uint32Array;
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
    this.segmentOf = new Uint32Array(descriptors.length);
    let total = 0;
    let at = 0;
    descriptors.forEach((d, i) => {
      if (at > 0 && at + d.length > SEGMENT_BYTES) {
        this.segmentBytes.push(at);
        at = 0;
      }
      this.segmentOf[i] = this.segmentBytes.length;
      this.offsets[i] = at;
      at += d.length;
      total += d.length;
    });
    this.segmentBytes.push(at);
    this.totalBytes = total;
    if (placed !== undefined) {
      const fits =
        placed.length === descriptors.length && placed.every((b, i) => b.byteLength === descriptors[i]?.length) && disjoint(placed);
      if (!fits) throw new TransferError('REFUSED', 'the receiving application placed the blocks in buffers that do not match them');
    }
    this.placed = placed ?? null;
    this.segments = placed === undefined ? this.segmentBytes.map(() => null) : [];
  }

  /** Receive memory taken so far (0 where the application placed the blocks). */
  get allocatedBytes(): number {
    return this.segments.reduce((n, s) => n + (s === null ? 0 : s.byteLength), 0);
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
      throw new TransferError(
        'PROTOCOL',
        `batch of blocks ${first}..${first + count - 1} out of order (expected ${this.nextBatch}, ${this.descriptors.length} in all)`,
      );
    }
    let announced = 0;
    for (let i = first; i < first + count; i++) announced += (this.descriptors[i] as BlockDescriptor).length;
    if (payloadBytes !== announced) {
      throw new TransferError('PROTOCOL', `batch at block ${first}: ${payloadBytes} payload bytes, announced ${announced}`);
    }
    // Memory follows the bytes: a batch may not claim much more than a segment ahead of them (a sender's
    // batch is 2 MiB, plus the block that crossed that line).
    const beforeLast = announced - (this.descriptors[first + count - 1] as BlockDescriptor).length;
    if (beforeLast > SEGMENT_BYTES) {
      throw new TransferError(
        'PROTOCOL',
        `batch at block ${first}: ${announced} bytes in one batch (limit ${SEGMENT_BYTES} before its last block)`,
      );
    }
    this.nextBatch = first + count;
    if (this.placed !== null) return coalesce(this.placed.slice(first, first + count));
    const views: Uint8Array[] = [];
    for (let i = first; i < first + count; i++) views.push(this.view(i));
    return coalesce(views);
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
    const slabs = this.segments; // placed blocks are the application's
    this.discard();
    for (const slab of slabs) if (slab !== null) this.pool.give(slab);
  }

  /** Drops every byte received; the assembly accepts nothing afterwards. */
  discard(): void {
    this.discarded = true;
    this.segments = [];
    this.placed = null;
    this.data.fill(null);
  }

  /** Where block `index` lives (for tcp frames, gRPC slices and shm reads alike). */
  view(index: number): Uint8Array {
    const d = this.descriptor(index);
    if (this.placed !== null) return this.placed[index] as Uint8Array;
    const k = this.segmentOf[index] as number;
    let slab = this.segments[k];
    if (slab === undefined || slab === null) {
      // The first byte of this segment is about to arrive: only now is its memory taken.
      slab = this.pool.take(this.segmentBytes[k] as number);
      this.segments[k] = slab;
    }
    return new Uint8Array(slab, this.offsets[index], d.length);
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
      throw new TransferError(
        'CHECKSUM_MISMATCH',
        `block ${index} (${this.descriptors[index]?.hash}): checksum ${hex(actual)}, sender said ${hex(checksum)}`,
      );
    }
    this.verified[index] = 1;
    this.checksums[index] = actual;
    this.verifiedCount++;
    if (this.onVerified === undefined) return;
    try {
      this.onVerified(index, {
        hash: (this.descriptors[index] as BlockDescriptor).hash,
        data: this.data[index] as Uint8Array,
        checksum: actual,
      });
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
