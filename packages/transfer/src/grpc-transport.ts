// The fallback data plane: block bytes ride the Transfer stream itself, packed into Chunks messages
// of about `chunkBytes` (small blocks share a message, large ones are sliced). Works wherever the
// control channel does; grpc-js streams move roughly 0.3-0.5 GB/s between processes.
import type { BlockAssembly } from './assembly';
import { blockChecksum } from './checksum';
import type { KvBlock } from './types';
import type { BlockChunk, Chunks, TransferUp } from './wire';

/** Default payload bytes per Chunks message; well below MAX_MESSAGE_BYTES. */
export const DEFAULT_CHUNK_BYTES = 1024 * 1024;

/** Sends every block as Chunks messages through `write`, which applies back-pressure. */
export async function pushChunks(
  blocks: readonly KvBlock[],
  write: (m: TransferUp) => Promise<void>,
  chunkBytes = DEFAULT_CHUNK_BYTES,
): Promise<void> {
  let batch: BlockChunk[] = [];
  let bytes = 0;
  for (let i = 0; i < blocks.length; i++) {
    const { data, checksum: known } = blocks[i] as KvBlock;
    const checksum = known ?? blockChecksum(data);
    for (let offset = 0; offset < data.byteLength; ) {
      const take = Math.min(chunkBytes - bytes, data.byteLength - offset);
      const end = offset + take;
      batch.push({ block_index: i, offset, data: data.subarray(offset, end), checksum: end === data.byteLength ? checksum : 0 });
      bytes += take;
      offset = end;
      if (bytes >= chunkBytes) {
        await write({ kind: 'chunks', chunks: { chunks: batch } });
        batch = [];
        bytes = 0;
      }
    }
  }
  if (batch.length > 0) await write({ kind: 'chunks', chunks: { chunks: batch } });
}

/** Receiver side: files each slice into the assembly (which copies it out of the message). */
export function ingestChunks(assembly: BlockAssembly, chunks: Chunks): void {
  for (const c of chunks.chunks) assembly.acceptSlice(c.block_index, c.offset, c.data, c.checksum);
}
