// Checks block bytes in the @pdserve/kv-cache codec format without knowing the model: the header must
// describe a shape whose payload length matches what follows, and the payload's crc32 must match.
import { BLOCK_HEADER_BYTES, blockBytes, blockCrc32, blockHeaderHash, crc32, type KvLayout } from '@pdserve/kv-cache';
import { invalidArgument } from './errors';
import type { BlockHash } from './keys';

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
  // Read with plain byte loads: a store checks every block it takes, and a DataView per block costs more
  // than the rest of the check.
  if (u32(bytes, 0) !== MAGIC) throw invalidArgument('not a KV block (bad magic)');
  const version = u16(bytes, 4);
  if (version !== VERSION) throw invalidArgument(`unsupported KV block version ${version}`);
  const [numLayers, numKvHeads, headDim, blockSize] = [u16(bytes, 8), u16(bytes, 10), u16(bytes, 12), u16(bytes, 14)];
  const same =
    expected !== undefined &&
    numLayers === expected.numLayers &&
    numKvHeads === expected.numKvHeads &&
    headDim === expected.headDim &&
    blockSize === expected.blockSize;
  const layout: KvLayout = same ? expected : { numLayers, numKvHeads, headDim, blockSize };
  if (numLayers < 1 || numKvHeads < 1 || headDim < 1 || blockSize < 1) {
    throw invalidArgument(`KV block header has an empty shape ${shapeText(layout)}`);
  }
  if (expected !== undefined && !same) {
    throw invalidArgument(`KV block shape ${shapeText(layout)} does not match the model's ${shapeText(expected)}`);
  }
  const numTokens = u16(bytes, 6);
  if (numTokens < 1 || numTokens > blockSize) {
    throw invalidArgument(`KV block claims ${numTokens} tokens, outside 1..${blockSize}`);
  }
  const payloadBytes = bytes.byteLength - BLOCK_HEADER_BYTES;
  if (payloadBytes !== blockBytes(layout)) {
    throw invalidArgument(`KV block payload is ${payloadBytes} bytes, but shape ${shapeText(layout)} needs ${blockBytes(layout)}`);
  }
  const intact =
    verifiedCrc === undefined ? crc32(bytes.subarray(BLOCK_HEADER_BYTES)) === u32(bytes, 24) : blockCrc32(bytes) === verifiedCrc >>> 0;
  if (!intact) {
    throw invalidArgument('KV block checksum mismatch');
  }
  return new Inspected(bytes, layout, numTokens, payloadBytes);
}

class Inspected implements BlockInfo {
  constructor(
    private readonly bytes: Uint8Array,
    readonly layout: KvLayout,
    readonly numTokens: number,
    readonly payloadBytes: number,
  ) {}

  get hash(): BlockHash | undefined {
    return blockHeaderHash(this.bytes);
  }
}

function u16(b: Uint8Array, at: number): number {
  return (b[at] as number) | ((b[at + 1] as number) << 8);
}

function u32(b: Uint8Array, at: number): number {
  return (u16(b, at) | (u16(b, at + 2) << 16)) >>> 0;
}

/** layers x kvHeads x headDim x blockSize, the order the header stores them in. */
function shapeText(l: KvLayout): string {
  return `${l.numLayers}x${l.numKvHeads}x${l.headDim}x${l.blockSize}`;
}
