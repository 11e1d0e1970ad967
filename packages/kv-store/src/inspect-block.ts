// Checks block bytes in the @pdserve/kv-cache codec format without knowing the model: the header must
// describe a shape whose payload length matches what follows, and the payload's crc32 must match.
import { crc32 } from 'node:zlib';
import { BLOCK_HEADER_BYTES, blockBytes, blockCrc32, type KvLayout } from '@pdserve/kv-cache';
import { invalidArgument } from './errors.js';
import type { BlockHash } from './keys.js';

// Mirrors packages/kv-cache/src/codec.ts, which does not export these two.
const MAGIC = 0x564b4450; // "PDKV" little-endian
const VERSION = 1;

export interface BlockInfo {
  readonly layout: KvLayout;
  readonly numTokens: number;
  /** The hash written in the header (as text); undefined when the block was encoded without one (all zero). */
  readonly hash: BlockHash | undefined;
  /** Whether the header names no hash, or the one it names is `hash` (compared without making text). */
  names(hash: BlockHash): boolean;
  readonly payloadBytes: number;
}

/**
 * Validates a block and describes it; throws KvStoreError(invalid_argument) naming the first problem.
 * With `expected`, the header's shape must equal that layout too. `verifiedCrc`: the CRC-32 of all of
 * `bytes`, already checked against them; the payload's CRC is then checked without reading the payload.
 */
export function inspectBlock(bytes: Uint8Array, expected?: KvLayout, verifiedCrc?: number): BlockInfo {
  if (bytes.byteLength < BLOCK_HEADER_BYTES) {
    throw invalidArgument(`KV block is ${bytes.byteLength} bytes, shorter than its ${BLOCK_HEADER_BYTES}-byte header`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(0, true) !== MAGIC) throw invalidArgument('not a KV block (bad magic)');
  const version = dv.getUint16(4, true);
  if (version !== VERSION) throw invalidArgument(`unsupported KV block version ${version}`);
  const layout: KvLayout = {
    numLayers: dv.getUint16(8, true),
    numKvHeads: dv.getUint16(10, true),
    headDim: dv.getUint16(12, true),
    blockSize: dv.getUint16(14, true),
  };
  if (layout.numLayers < 1 || layout.numKvHeads < 1 || layout.headDim < 1 || layout.blockSize < 1) {
    throw invalidArgument(`KV block header has an empty shape ${shapeText(layout)}`);
  }
  if (expected !== undefined && (layout.numLayers !== expected.numLayers || layout.numKvHeads !== expected.numKvHeads
    || layout.headDim !== expected.headDim || layout.blockSize !== expected.blockSize)) {
    throw invalidArgument(`KV block shape ${shapeText(layout)} does not match the model's ${shapeText(expected)}`);
  }
  const numTokens = dv.getUint16(6, true);
  if (numTokens < 1 || numTokens > layout.blockSize) {
    throw invalidArgument(`KV block claims ${numTokens} tokens, outside 1..${layout.blockSize}`);
  }
  const payloadBytes = bytes.byteLength - BLOCK_HEADER_BYTES;
  if (payloadBytes !== blockBytes(layout)) {
    throw invalidArgument(`KV block payload is ${payloadBytes} bytes, but shape ${shapeText(layout)} needs ${blockBytes(layout)}`);
  }
  const intact = verifiedCrc === undefined
    ? crc32(bytes.subarray(BLOCK_HEADER_BYTES)) === dv.getUint32(24, true)
    : blockCrc32(bytes) === verifiedCrc >>> 0;
  if (!intact) {
    throw invalidArgument('KV block checksum mismatch');
  }
  return {
    layout, numTokens, payloadBytes,
    get hash() {
      return headerHash(bytes);
    },
    names: (hash) => headerNames(bytes, hash),
  };
}

/** The header's hash bytes are all zero, or spell `hash` (16 lowercase hex characters). */
function headerNames(bytes: Uint8Array, hash: BlockHash): boolean {
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

const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'));

/** The hash in bytes 16..24 of the header as 16 hex characters; undefined when all zero. */
function headerHash(bytes: Uint8Array): BlockHash | undefined {
  let hex = '';
  let any = 0;
  for (let i = 16; i < 24; i++) {
    const b = bytes[i] as number;
    any |= b;
    hex += HEX[b] as string;
  }
  return any === 0 ? undefined : hex;
}

/** layers x kvHeads x headDim x blockSize, the order the header stores them in. */
function shapeText(l: KvLayout): string {
  return `${l.numLayers}x${l.numKvHeads}x${l.headDim}x${l.blockSize}`;
}
