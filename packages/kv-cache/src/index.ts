export { blockBytes, blockFloats, headRunOffset, type KvLayout } from './layout';
export { blocksBeforeLastToken, chainHashes, hashBlock, rootHash, type BlockHash } from './hash';
export { BlockPool, type BlockId, type KvCacheEvent } from './pool';
export {
  BLOCK_HEADER_BYTES,
  BlockCodecError,
  blockCrc32,
  blockHeaderHash,
  blockHeaderNames,
  decodeBlock,
  encodeBlock,
  type DecodedBlock,
} from './codec';
export { crc32, crc32Combine, crc32Implementation, crc32Short } from './crc';
