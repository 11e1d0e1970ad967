// The disk tier's file format: a self-checking header naming the block, then the block bytes.
//   u32 magic "PDKF" | u16 version | u16 modelId length | u32 block length | 8-byte hash
//   | u32 crc32 of the block | u32 crc32 of the 24 bytes before it and the modelId | modelId (utf-8) | block
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { crc32 } from '@pdserve/kv-cache';
import type { BlockHash } from './keys';

const MAGIC = 0x464b4450; // "PDKF" little-endian
const VERSION = 1;
/** Bytes before the model id. */
export const DISK_FIXED_HEADER_BYTES = 28;
/** Longest header: model ids are at most 256 bytes. */
export const DISK_MAX_HEADER_BYTES = DISK_FIXED_HEADER_BYTES + 256;
export const BLOCK_FILE_SUFFIX = '.kvb';
export const TEMP_FILE_SUFFIX = '.tmp';

export interface DiskFileHeader {
  readonly modelId: string;
  readonly hash: BlockHash;
  readonly blockLength: number;
  readonly blockCrc: number;
  /** Where the block starts in the file. */
  readonly headerLength: number;
}

export function encodeDiskHeader(modelId: string, hash: BlockHash, blockLength: number, blockCrc: number): Buffer {
  const model = Buffer.from(modelId, 'utf8');
  const out = Buffer.alloc(DISK_FIXED_HEADER_BYTES + model.byteLength);
  out.writeUInt32LE(MAGIC, 0);
  out.writeUInt16LE(VERSION, 4);
  out.writeUInt16LE(model.byteLength, 6);
  out.writeUInt32LE(blockLength, 8);
  out.write(hash, 12, 8, 'hex');
  out.writeUInt32LE(blockCrc, 20);
  model.copy(out, DISK_FIXED_HEADER_BYTES);
  out.writeUInt32LE(headerCrc(out, model.byteLength), 24);
  return out;
}

/** Parses and checks the header at the start of `bytes`; a string names what is wrong. */
export function parseDiskHeader(bytes: Uint8Array): DiskFileHeader | string {
  if (bytes.byteLength < DISK_FIXED_HEADER_BYTES) return `file is ${bytes.byteLength} bytes, shorter than its header`;
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.readUInt32LE(0) !== MAGIC) return 'bad magic';
  if (buf.readUInt16LE(4) !== VERSION) return `unsupported version ${buf.readUInt16LE(4)}`;
  const modelLength = buf.readUInt16LE(6);
  const headerLength = DISK_FIXED_HEADER_BYTES + modelLength;
  if (buf.byteLength < headerLength) return 'header is truncated';
  if (headerCrc(buf, modelLength) !== buf.readUInt32LE(24)) return 'header checksum mismatch';
  return {
    modelId: buf.toString('utf8', DISK_FIXED_HEADER_BYTES, headerLength),
    hash: buf.toString('hex', 12, 20),
    blockLength: buf.readUInt32LE(8),
    blockCrc: buf.readUInt32LE(20),
    headerLength,
  };
}

/** Size of the whole file for a block. */
export function diskFileBytes(modelId: string, blockLength: number): number {
  return DISK_FIXED_HEADER_BYTES + Buffer.byteLength(modelId, 'utf8') + blockLength;
}

/** One folder per model, named by a digest so that any model id is a safe folder name. */
export function modelFolderName(modelId: string): string {
  return createHash('sha256').update(modelId).digest('hex').slice(0, 16);
}

export function blockFilePath(dir: string, modelId: string, hash: BlockHash): string {
  return join(dir, modelFolderName(modelId), `${hash}${BLOCK_FILE_SUFFIX}`);
}

export function blockCrc(bytes: Uint8Array): number {
  return crc32(bytes);
}

function headerCrc(buf: Buffer, modelLength: number): number {
  const head = crc32(buf.subarray(0, 24));
  return crc32(buf.subarray(DISK_FIXED_HEADER_BYTES, DISK_FIXED_HEADER_BYTES + modelLength), head);
}
