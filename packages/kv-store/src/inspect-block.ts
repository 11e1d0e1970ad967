// Checks block bytes in the @pdserve/kv-cache codec format without knowing the model: the header must
// describe a shape whose payload length matches what follows, and the payload's crc32 must match.
import { BLOCK_HEADER_BYTES, blockBytes, blockCrc32, blockHeaderHash, crc32, type KvLayout } from '@pdserve/kv-cache';
import { invalidArgument } from './errors.js';
import type { BlockHash } from './keys.js';

// Mirrors packages/kv-cache/src/codec.ts, which does not export these two.
const MAGIC = 0x564b4450; // "PDKV" little-endian
const VERSION = 1;

export interface BlockInfo {
  readonly layout: KvLayout;
  readonly numTokens: number;
  /** The hash written in the header (as text, made when asked); undefined when the block was encoded without one. */
  readonly hash: BlockHash | undefined;
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
      return blockHeaderHash(bytes);
    },
  };
}

/** layers x kvHeads x headDim x blockSize, the order the header stores them in. */
function shapeText(l: KvLayout): string {
  return `${l.numLayers}x${l.numKvHeads}x${l.headDim}x${l.blockSize}`;
}
