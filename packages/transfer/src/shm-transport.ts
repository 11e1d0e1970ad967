// Same-host data plane: the sender writes every block of a transfer, back to back, into one segment
// file in the shm site; the receiver reads it straight into one buffer per block (readv), verifies,
// and deletes it. Files whose owner died or that outlived any deadline are swept.
import { constants } from 'node:fs';
import { open, readdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { blockChecksum } from './checksum';
import { TransferError } from './errors';
import type { KvBlock } from './types';

const SEGMENT_NAME = /^pdserve-kv-(\d+)-([A-Za-z0-9_-]{1,64})\.seg$/;
const PROBE_NAME = /^probe-\d+-[0-9a-f]+$/;
/** Buffers per readv/writev call: Linux's IOV_MAX. */
const IOV_MAX = 1024;
/** Bytes per readv/writev call, so an abort is noticed between calls. */
const IO_BATCH_BYTES = 64 * 1024 * 1024;

export function segmentPath(dir: string, transferId: string): string {
  return join(dir, `pdserve-kv-${process.pid}-${transferId}.seg`);
}

/** Whether `path` names a segment file directly inside `dir` (the receiver reads nothing else). */
export function isSegmentPath(dir: string, path: string): boolean {
  return dirname(path) === dir && SEGMENT_NAME.test(basename(path));
}

export interface WrittenSegment {
  readonly size: number;
  readonly checksums: readonly number[];
}

/** Writes the blocks into a new segment file; on any failure the file is removed. */
export async function writeSegment(path: string, blocks: readonly KvBlock[], signal: AbortSignal): Promise<WrittenSegment> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'wx', 0o600);
  } catch (e) {
    throw new TransferError('UNAVAILABLE', `shm segment ${path} cannot be created`, { cause: e });
  }
  let written = false;
  try {
    const checksums = blocks.map((b) => b.checksum ?? blockChecksum(b.data));
    const size = await ioAll(
      fh,
      blocks.map((b) => b.data),
      'write',
      signal,
    );
    written = true;
    return { size, checksums };
  } catch (e) {
    if (e instanceof TransferError || signal.aborted) throw e;
    throw new TransferError('UNAVAILABLE', `shm segment ${path}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  } finally {
    await fh.close().catch(() => undefined);
    if (!written) await removeSegment(path);
  }
}

/** Reads a segment into `buffers`, one per block in order, which must add up to the segment's size. */
export async function readSegment(path: string, buffers: readonly Uint8Array[], signal: AbortSignal): Promise<void> {
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (e) {
    throw new TransferError('CONNECTION_LOST', `shm segment ${path} cannot be opened`, { cause: e });
  }
  try {
    const st = await fh.stat();
    const expected = buffers.reduce((n, b) => n + b.byteLength, 0);
    if (!st.isFile() || st.size !== expected) {
      throw new TransferError('PROTOCOL', `shm segment ${path}: ${st.size} bytes, expected ${expected}`);
    }
    await ioAll(fh, buffers, 'read', signal);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

export async function removeSegment(path: string): Promise<void> {
  await unlink(path).catch(() => undefined);
}

export interface SweepOptions {
  /** A segment older than this is removed whoever owns it (ms; default 10 min: beyond any deadline). */
  readonly maxAgeMs?: number;
  /** A segment whose owner process is gone is removed once this old (ms; default 30 s). */
  readonly deadOwnerGraceMs?: number;
}

/** Removes stale segment and probe files from `dir`; returns how many. */
export async function sweepStaleSegments(dir: string, opts: SweepOptions = {}): Promise<number> {
  const maxAge = opts.maxAgeMs ?? 10 * 60_000;
  const grace = opts.deadOwnerGraceMs ?? 30_000;
  const names = await readdir(dir).catch(() => [] as string[]);
  const now = Date.now();
  let removed = 0;
  for (const name of names) {
    const m = SEGMENT_NAME.exec(name);
    if (m === null && !PROBE_NAME.test(name)) continue;
    const file = join(dir, name);
    const st = await stat(file).catch(() => null);
    if (st === null) continue;
    const age = now - st.mtimeMs;
    const owner = m === null ? 0 : Number(m[1]);
    const ownerGone = m === null || (owner !== process.pid && !processAlive(owner));
    if (age > maxAge || (ownerGone && age > grace)) {
      await removeSegment(file);
      removed++;
    }
  }
  return removed;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Reads or writes all of `buffers` from/at offset 0, in batches, tolerating short reads/writes. */
async function ioAll(fh: FileHandle, buffers: readonly Uint8Array[], op: 'read' | 'write', signal: AbortSignal): Promise<number> {
  let position = 0;
  let i = 0; // next buffer
  let head: Uint8Array | null = null; // unfinished rest of buffers[i - 1] after a short call
  while (head !== null || i < buffers.length) {
    signal.throwIfAborted();
    const batch: Uint8Array[] = [];
    let bytes = 0;
    if (head !== null) {
      batch.push(head);
      bytes += head.byteLength;
    }
    while (i < buffers.length && batch.length < IOV_MAX && bytes < IO_BATCH_BYTES) {
      const b = buffers[i++] as Uint8Array;
      batch.push(b);
      bytes += b.byteLength;
    }
    const done = op === 'write' ? (await fh.writev(batch, position)).bytesWritten : (await fh.readv(batch, position)).bytesRead;
    if (done === 0 && bytes > 0) throw new TransferError('PROTOCOL', `shm segment ended early at ${position}`);
    position += done;
    head = null;
    if (done < bytes) {
      // Short call: carry the unfinished part of the batch over to the next one.
      let skip = done;
      let k = 0;
      while (skip >= (batch[k] as Uint8Array).byteLength) skip -= (batch[k++] as Uint8Array).byteLength;
      head = (batch[k] as Uint8Array).subarray(skip);
      i -= batch.length - k - 1;
    }
  }
  return position;
}
