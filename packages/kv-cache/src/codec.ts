import { crc32, crc32Combine, crc32Short } from './crc';
import { blockBytes, type KvLayout } from './layout';
import type { BlockHash } from './hash';

/**
 * The unit that moves between nodes: a 40-byte header then the block's floats.
 *   magic "PDKV" | u16 version | u16 numTokens | u16 layers | u16 kvHeads | u16 headDim | u16 blockSize
 *   | 8-byte hash (zero if the block is partial) | u32 crc32 of the payload | 8 bytes reserved
 */
const MAGIC = 0x564b4450; // "PDKV" little-endian
const VERSION = 1;
export const BLOCK_HEADER_BYTES = 40;

export interface DecodedBlock {
  readonly hash: BlockHash | undefined;
  readonly numTokens: number;
  /** A view into the input bytes (no copy). */
  readonly payload: Uint8Array;
}

export class BlockCodecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BlockCodecError';
  }
}

/**
 * Encodes a block into `into` (exactly BLOCK_HEADER_BYTES + payload bytes long) or a new buffer. Many
 * blocks encoded into views of one allocation cost far less than one allocation each.
 */
export function encodeBlock(
  layout: KvLayout,
  payload: Uint8Array,
  hash: BlockHash | undefined,
  numTokens: number,
  into?: Uint8Array,
): Uint8Array {
  const size = BLOCK_HEADER_BYTES + payload.byteLength;
  if (into !== undefined && into.byteLength !== size)
    throw new BlockCodecError(`encoding a ${size}-byte block into ${into.byteLength} bytes`);
  const out = into ?? new Uint8Array(size);
  out.fill(0, 0, BLOCK_HEADER_BYTES);
  const dv = new DataView(out.buffer, out.byteOffset, size);
  dv.setUint32(0, MAGIC, true);
  dv.setUint16(4, VERSION, true);
  dv.setUint16(6, numTokens, true);
  dv.setUint16(8, layout.numLayers, true);
  dv.setUint16(10, layout.numKvHeads, true);
  dv.setUint16(12, layout.headDim, true);
  dv.setUint16(14, layout.blockSize, true);
  if (hash !== undefined) Buffer.from(out.buffer, out.byteOffset + 16, 8).write(hash, 'hex');
  dv.setUint32(24, crc32(payload), true);
  out.set(payload, BLOCK_HEADER_BYTES);
  return out;
}

/**
 * The CRC-32 of the whole encoded block, derived from its header (which holds the payload's CRC-32) in
 * O(log n), not computed over the payload. It equals crc32(bytes) exactly when the header's payload CRC
 * is right. So a block is checksummed once, when it is encoded: that CRC is what the transfer engine
 * carries and verifies on every hop, and a block verified in transit needs no second pass to decode.
 */
export function blockCrc32(bytes: Uint8Array): number {
  if (bytes.byteLength < BLOCK_HEADER_BYTES) return crc32(bytes) >>> 0;
  const payloadCrc =
    ((bytes[24] as number) | ((bytes[25] as number) << 8) | ((bytes[26] as number) << 16) | ((bytes[27] as number) << 24)) >>> 0;
  return crc32Combine(crc32Short(bytes, 0, BLOCK_HEADER_BYTES), payloadCrc, bytes.byteLength - BLOCK_HEADER_BYTES);
}

/**
 * Verifies magic, layout and checksum; throws BlockCodecError naming what is wrong. `verifiedCrc`: the
 * CRC-32 of all of `bytes`, already checked against them (by the transfer engine); the payload's CRC is
 * then checked against it without another pass over the payload.
 */
export function decodeBlock(layout: KvLayout, bytes: Uint8Array, verifiedCrc?: number): DecodedBlock {
  if (bytes.byteLength < BLOCK_HEADER_BYTES) throw new BlockCodecError(`block is ${bytes.byteLength} bytes, shorter than its header`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(0, true) !== MAGIC) throw new BlockCodecError('not a KV block (bad magic)');
  if (dv.getUint16(4, true) !== VERSION) throw new BlockCodecError(`unsupported KV block version ${dv.getUint16(4, true)}`);
  const shape = [dv.getUint16(8, true), dv.getUint16(10, true), dv.getUint16(12, true), dv.getUint16(14, true)];
  const want = [layout.numLayers, layout.numKvHeads, layout.headDim, layout.blockSize];
  if (shape.some((v, i) => v !== want[i])) {
    throw new BlockCodecError(`KV block shape ${shape.join('x')} does not match this model's ${want.join('x')}`);
  }
  const numTokens = dv.getUint16(6, true);
  if (numTokens < 1 || numTokens > layout.blockSize) throw new BlockCodecError(`KV block claims ${numTokens} tokens`);
  const payload = bytes.subarray(BLOCK_HEADER_BYTES);
  if (payload.byteLength !== blockBytes(layout)) {
    throw new BlockCodecError(`KV block payload is ${payload.byteLength} bytes, expected ${blockBytes(layout)}`);
  }
  const intact = verifiedCrc === undefined ? crc32(payload) === dv.getUint32(24, true) : blockCrc32(bytes) === verifiedCrc >>> 0;
  if (!intact) throw new BlockCodecError('KV block checksum mismatch');
  return { hash: blockHeaderHash(bytes), numTokens, payload };
}

const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'));

/** The hash an encoded block's header names (bytes 16..24, as 16 hex characters); undefined when all zero. */
export function blockHeaderHash(bytes: Uint8Array): BlockHash | undefined {
  let hex = '';
  let any = 0;
  for (let i = 16; i < 24; i++) {
    const b = bytes[i] as number;
    any |= b;
    hex += HEX[b] as string;
  }
  return any === 0 ? undefined : hex;
}

/**
 * Whether an encoded block's header names no hash (all zero) or exactly `hash` (16 lowercase hex
 * characters): blockHeaderHash(bytes) compared with `hash`, without making text.
 */
export function blockHeaderNames(bytes: Uint8Array, hash: BlockHash): boolean {
  let any = 0;
  let same = hash.length === 16;
  for (let i = 0; i < 8; i++) {
    const b = bytes[16 + i] as number;
    any |= b;
    if (same && (nibble(hash.charCodeAt(2 * i)) !== b >> 4 || nibble(hash.charCodeAt(2 * i + 1)) !== (b & 15))) same = false;
  }
  return any === 0 || same;
}

/** A lowercase hex digit's value; -1 for anything else. */
function nibble(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}
