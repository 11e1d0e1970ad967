// The raw TCP data plane's wire format. The receiver pulls: it dials the sender's data port (named
// in Begin) and asks for a transfer by its token; the sender answers with the transfer's blocks in
// batches on that connection. Everything is little-endian.
//
// Pull request, receiver -> sender, 16 bytes:
//        0     4  magic 'PKVQ'
//        4     4  zero
//        8     8  transfer token (random, minted by the sender, sent in Begin)
//
// Admitted, receiver -> sender, 16 bytes, once the receiving application took every block (the same
// word as the gRPC Admitted that follows, a round of HTTP/2 sooner; protocol 4):
//        0     4  magic 'PKVA'
//        4     4  zero
//        8     8  transfer token
//
// Listed pull request, receiver -> sender, 16 bytes: as a pull request, magic 'PKVL'. The receiver does not
// know the transfer's blocks yet (it asked before they were offered: a pipelined pull): the sender first
// sends their list, then the batches.
//
// List, sender -> receiver, once, before the first batch of a listed pull:
//        0     4  magic 'PKVI'
//        4     4  blocks (at least 1)
//        8     8  transfer token
//       16  12*n  each block's hash (8 bytes, as packHashes packs it) and length (4 bytes)
//
// Batch, sender -> receiver, in block order until every block is sent:
//        0     4  magic 'PKV2'
//        4     4  index of the batch's first block
//        8     4  blocks in the batch (at least 1)
//       12     4  payload bytes
//       16     8  transfer token
//       24  4*n   CRC-32 of each block's bytes (see checksum.ts)
//        …        payload: the blocks' bytes back to back
//
// The payload is laid out exactly as the receiver lays the blocks out in its receive slab (back to
// back), so the receiver reads it from the socket straight into the slab (or into the buffers the
// application placed the blocks in, several at a time where they are neighbours): no copy, no per-read
// allocation. Only the 24-byte header and the checksum table go through small scratch buffers.

export const PULL_REQUEST_BYTES = 16;
export const BATCH_HEADER_BYTES = 24;
export const PULL_MAGIC = 0x5156_4b50; // bytes 'P' 'K' 'V' 'Q'
export const ADMITTED_MAGIC = 0x4156_4b50; // bytes 'P' 'K' 'V' 'A'
export const BATCH_MAGIC = 0x3256_4b50; // bytes 'P' 'K' 'V' '2'
export const LISTED_PULL_MAGIC = 0x4c56_4b50; // bytes 'P' 'K' 'V' 'L'
export const LIST_MAGIC = 0x4956_4b50; // bytes 'P' 'K' 'V' 'I'
export const LIST_HEADER_BYTES = 16;
/** Bytes per block in a list. */
export const LIST_ENTRY_BYTES = 12;
export const TOKEN_BYTES = 8;
/** Most blocks one batch may carry (bounds the checksum table a receiver reads). */
export const MAX_BATCH_BLOCKS = 4096;

export class FrameError extends Error {
  override readonly name = 'FrameError';
}

function putU32(b: Uint8Array, at: number, v: number): void {
  b[at] = v;
  b[at + 1] = v >>> 8;
  b[at + 2] = v >>> 16;
  b[at + 3] = v >>> 24;
}

function getU32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

/** A token as a map key. */
export function tokenKey(token: Uint8Array): string {
  return `${getU32(token, 0)}.${getU32(token, 4)}`;
}

export function encodePullRequest(token: Uint8Array): Uint8Array {
  return encodeRequest(PULL_MAGIC, token);
}

export function encodeAdmitted(token: Uint8Array): Uint8Array {
  return encodeRequest(ADMITTED_MAGIC, token);
}

export function encodeListedPullRequest(token: Uint8Array): Uint8Array {
  return encodeRequest(LISTED_PULL_MAGIC, token);
}

/** A listed pull's list of blocks: header and entries. */
export function encodeList(token: Uint8Array, blocks: readonly { readonly hash: string; readonly length: number }[]): Uint8Array {
  const out = new Uint8Array(LIST_HEADER_BYTES + LIST_ENTRY_BYTES * blocks.length);
  putU32(out, 0, LIST_MAGIC);
  putU32(out, 4, blocks.length);
  out.set(token.subarray(0, TOKEN_BYTES), 8);
  blocks.forEach((b, i) => {
    const at = LIST_HEADER_BYTES + LIST_ENTRY_BYTES * i;
    out.set(Buffer.from(b.hash, 'hex').subarray(0, 8), at);
    putU32(out, at + 8, b.length);
  });
  return out;
}

/** A list's header: how many entries follow; throws unless it is one, for this token, of 1..maxBlocks blocks. */
export function decodeListHeader(header: Uint8Array, token: Uint8Array, maxBlocks: number): number {
  if (getU32(header, 0) !== LIST_MAGIC) throw new FrameError('bad list magic');
  for (let i = 0; i < TOKEN_BYTES; i++) if (header[8 + i] !== token[i]) throw new FrameError('list of another transfer');
  const count = getU32(header, 4);
  if (count === 0 || count > maxBlocks) throw new FrameError(`list of ${count} blocks (limit ${maxBlocks})`);
  return count;
}

/** A list's entries. */
export function decodeListEntries(entries: Uint8Array): { hash: string; length: number }[] {
  const out: { hash: string; length: number }[] = [];
  for (let at = 0; at + LIST_ENTRY_BYTES <= entries.byteLength; at += LIST_ENTRY_BYTES) {
    const hash = Buffer.from(entries.buffer, entries.byteOffset + at, 8).toString('hex');
    out.push({ hash, length: getU32(entries, at + 8) });
  }
  return out;
}

function encodeRequest(magic: number, token: Uint8Array): Uint8Array {
  const out = new Uint8Array(PULL_REQUEST_BYTES);
  putU32(out, 0, magic);
  out.set(token.subarray(0, TOKEN_BYTES), 8);
  return out;
}

/** What a receiver sent on a data connection: a pull request or an admission, and its token. */
export function decodeRequest(bytes: Uint8Array): { kind: 'pull' | 'listed-pull' | 'admitted'; token: Uint8Array } {
  const magic = getU32(bytes, 0);
  const kind = magic === PULL_MAGIC ? 'pull' : magic === LISTED_PULL_MAGIC ? 'listed-pull' : magic === ADMITTED_MAGIC ? 'admitted' : null;
  if (bytes.byteLength !== PULL_REQUEST_BYTES || kind === null || getU32(bytes, 4) !== 0) {
    throw new FrameError('bad request on a data connection');
  }
  return { kind, token: bytes.slice(8, 16) };
}

/** A batch's header and checksum table, ready to write before its payload. */
export function encodeBatchHead(token: Uint8Array, first: number, checksums: readonly number[], payloadBytes: number): Uint8Array {
  const out = new Uint8Array(BATCH_HEADER_BYTES + 4 * checksums.length);
  putU32(out, 0, BATCH_MAGIC);
  putU32(out, 4, first);
  putU32(out, 8, checksums.length);
  putU32(out, 12, payloadBytes);
  out.set(token.subarray(0, TOKEN_BYTES), 16);
  checksums.forEach((c, i) => putU32(out, BATCH_HEADER_BYTES + 4 * i, c));
  return out;
}

/** Where a transfer's batches land: the receive slab, and the checks each batch must pass. */
export interface BatchTarget {
  /** True once every block arrived verified. */
  readonly complete: boolean;
  /**
   * Where the payload of blocks [first, first + count) goes, in order: one slab region for them all, or
   * one buffer per block; throws unless that is the next batch in order.
   */
  batchRegions(first: number, count: number, payloadBytes: number): Uint8Array[];
  /** Bytes of block `index`. */
  blockLength(index: number): number;
  /**
   * Block `index` was just read whole: verify it against the sender's checksum now, while its bytes are
   * still in the CPU cache (not once the whole batch, up to megabytes, is in).
   */
  acceptBlock(index: number, checksum: number): void;
}

type Phase = 'header' | 'checksums' | 'payload';

/**
 * Reads one transfer's batches. It names the buffer the next bytes from the socket go into
 * (`next`), and is told how many arrived there (`advance`); it never copies payload bytes itself.
 */
export class BatchReader {
  private readonly header = new Uint8Array(BATCH_HEADER_BYTES);
  private phase: Phase = 'header';
  private fill = 0;
  private first = 0;
  private count = 0;
  private sums: Uint8Array = new Uint8Array(0);
  private regions: Uint8Array[] = [];
  /** The region of `regions` being filled. */
  private at = 0;
  private region: Uint8Array = new Uint8Array(0);
  /** Payload bytes in the regions before `at`. */
  private regionsDone = 0;
  /** The batch's next block to verify (relative to `first`), and the payload offset where it ends. */
  private verifyNext = 0;
  private verifyEnd = 0;

  constructor(
    private readonly token: Uint8Array,
    private readonly target: BatchTarget,
  ) {}

  /** Where the next bytes go: never empty until the transfer is complete. */
  next(): Uint8Array {
    switch (this.phase) {
      case 'header':
        return this.header.subarray(this.fill);
      case 'checksums':
        return this.sums.subarray(this.fill);
      case 'payload':
        return this.region.subarray(this.fill);
    }
  }

  /** `n` bytes arrived at the start of what next() returned. True once the transfer is complete. */
  advance(n: number): boolean {
    this.fill += n;
    if (this.phase === 'header' && this.fill === BATCH_HEADER_BYTES) this.beginBatch();
    else if (this.phase === 'checksums' && this.fill === this.sums.byteLength) this.beginPayload();
    else if (this.phase === 'payload') {
      const received = this.regionsDone + this.fill;
      while (this.verifyNext < this.count && this.verifyEnd <= received) {
        this.target.acceptBlock(this.first + this.verifyNext, getU32(this.sums, 4 * this.verifyNext));
        if (++this.verifyNext < this.count) this.verifyEnd += this.target.blockLength(this.first + this.verifyNext);
      }
      if (this.fill === this.region.byteLength) {
        this.regionsDone += this.fill;
        this.fill = 0;
        if (++this.at < this.regions.length) this.region = this.regions[this.at] as Uint8Array;
        else this.phase = 'header'; // every block of the batch is in and verified
      }
    }
    return this.target.complete;
  }

  /** Feeds bytes that arrived somewhere else (a scratch buffer), copying them where they belong. */
  feed(bytes: Uint8Array): boolean {
    let at = 0;
    while (at < bytes.byteLength) {
      if (this.target.complete) throw new FrameError('bytes after the last batch');
      const into = this.next();
      const take = Math.min(into.byteLength, bytes.byteLength - at);
      into.set(bytes.subarray(at, at + take));
      at += take;
      this.advance(take);
    }
    return this.target.complete;
  }

  private beginBatch(): void {
    const h = this.header;
    if (getU32(h, 0) !== BATCH_MAGIC) throw new FrameError('bad batch magic');
    for (let i = 0; i < TOKEN_BYTES; i++) {
      if (h[16 + i] !== this.token[i]) throw new FrameError('batch of another transfer');
    }
    this.first = getU32(h, 4);
    this.count = getU32(h, 8);
    if (this.count === 0 || this.count > MAX_BATCH_BLOCKS) throw new FrameError(`batch of ${this.count} blocks`);
    this.regions = this.target.batchRegions(this.first, this.count, getU32(h, 12));
    this.sums = new Uint8Array(4 * this.count);
    this.phase = 'checksums';
    this.fill = 0;
  }

  private beginPayload(): void {
    this.phase = 'payload';
    this.fill = 0;
    this.at = 0;
    this.region = this.regions[0] as Uint8Array;
    this.regionsDone = 0;
    this.verifyNext = 0;
    this.verifyEnd = this.target.blockLength(this.first);
  }
}
