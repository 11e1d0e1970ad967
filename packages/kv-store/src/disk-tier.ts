// The disk tier: one file per block in a folder, an in-memory LRU index rebuilt by scanning at open, and a
// byte budget that counts stored files, files being written and files being deleted.
import type { Dirent } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from '@pdserve/control-plane';
import {
  BLOCK_FILE_SUFFIX,
  DISK_MAX_HEADER_BYTES,
  TEMP_FILE_SUFFIX,
  blockCrc,
  blockFilePath,
  diskFileBytes,
  encodeDiskHeader,
  modelFolderName,
  parseDiskHeader,
  type DiskFileHeader,
} from './disk-file';
import { blockKey, type BlockHash, type BlockKey } from './keys';
import { Mutex } from './mutex';

export interface DiskEntry {
  readonly key: BlockKey;
  readonly modelId: string;
  readonly hash: BlockHash;
  readonly path: string;
  /** Whole file, header included: what the budget counts. */
  readonly fileBytes: number;
  readonly blockLength: number;
  readonly blockCrc: number;
}

/** What eviction must respect; asked at the moment victims are chosen. */
export interface EvictionGuard {
  isLeased(key: BlockKey): boolean;
  isPinned(key: BlockKey): boolean;
  /** Whether pinned blocks may go when nothing else can. */
  readonly evictPinned: boolean;
}

export interface DiskTierOptions {
  readonly dir: string;
  readonly capacityBytes: number;
  readonly fsync: boolean;
  readonly verifyOnOpen: boolean;
  readonly guard: EvictionGuard;
  readonly logger: Logger;
}

export type DiskWriteOutcome = 'written' | 'exists' | 'no_room' | 'failed';

export interface DiskWriteResult {
  readonly outcome: DiskWriteOutcome;
  /** Blocks deleted to make room (gone from the store unless memory also holds them). */
  readonly evicted: readonly DiskEntry[];
}

export type DiskReadResult = { readonly ok: true; readonly bytes: Uint8Array } | { readonly ok: false; readonly reason: string };

export interface DiskOpenReport {
  /** Torn, truncated, corrupt or leftover temporary files deleted by the scan. */
  readonly discarded: number;
  /** Valid files deleted because they did not fit the budget (oldest first). */
  readonly trimmed: number;
}

const HASH_FILE = new RegExp(`^([0-9a-f]{16})\\${BLOCK_FILE_SUFFIX}$`);
const MODEL_FOLDER = /^[0-9a-f]{16}$/;

export class DiskTier {
  /** Oldest first (insertion order; touch() re-inserts). */
  private readonly index = new Map<BlockKey, DiskEntry>();
  private indexed = 0;
  private writing = 0;
  private deleting = 0;
  /** Writes run one at a time, so that choosing victims and reserving space see a settled budget. */
  private readonly writes = new Mutex();
  private readonly folders = new Set<string>();
  private tempSeq = 0;

  private constructor(private readonly o: DiskTierOptions) {}

  get capacityBytes(): number {
    return this.o.capacityBytes;
  }

  get blocks(): number {
    return this.index.size;
  }

  get storedBytes(): number {
    return this.indexed;
  }

  /** Files being written or deleted. */
  get reservedBytes(): number {
    return this.writing + this.deleting;
  }

  get usedBytes(): number {
    return this.indexed + this.writing + this.deleting;
  }

  static async open(o: DiskTierOptions): Promise<{ tier: DiskTier; report: DiskOpenReport }> {
    const tier = new DiskTier(o);
    await mkdir(o.dir, { recursive: true });
    const report = await tier.scan();
    return { tier, report };
  }

  has(key: BlockKey): boolean {
    return this.index.has(key);
  }

  get(key: BlockKey): DiskEntry | undefined {
    return this.index.get(key);
  }

  touch(entry: DiskEntry): void {
    if (this.index.get(entry.key) !== entry) return;
    this.index.delete(entry.key);
    this.index.set(entry.key, entry);
  }

  entries(): IterableIterator<DiskEntry> {
    return this.index.values();
  }

  /** Writes a block atomically (temp file, then rename), first deleting LRU files if the budget needs it. */
  write(modelId: string, hash: BlockHash, bytes: Uint8Array, crc: number): Promise<DiskWriteResult> {
    return this.writes.run(async () => {
      const key = blockKey(modelId, hash);
      if (this.index.has(key)) return { outcome: 'exists', evicted: [] };
      const size = diskFileBytes(modelId, bytes.byteLength);
      const victims = this.chooseVictims(this.usedBytes + size - this.o.capacityBytes);
      if (victims === undefined) return { outcome: 'no_room', evicted: [] };
      await Promise.all(victims.map((v) => this.deleteFile(v)));
      this.writing += size;
      const path = blockFilePath(this.o.dir, modelId, hash);
      const temp = `${path}.${process.pid}.${++this.tempSeq}${TEMP_FILE_SUFFIX}`;
      try {
        await this.ensureFolder(dirname(path));
        const header = encodeDiskHeader(modelId, hash, bytes.byteLength, crc);
        const file = await open(temp, 'wx');
        try {
          const { bytesWritten } = await file.writev([header, bytes]);
          if (bytesWritten !== size) throw new Error(`short write: ${bytesWritten} of ${size} bytes`);
          if (this.o.fsync) await file.sync();
        } finally {
          await file.close();
        }
        await rename(temp, path);
      } catch (error) {
        await rm(temp, { force: true }).catch(() => undefined);
        this.o.logger.warn({ path, err: String(error) }, 'kv-store: disk write failed; block not demoted');
        return { outcome: 'failed', evicted: victims };
      } finally {
        this.writing -= size;
      }
      const entry: DiskEntry = { key, modelId, hash, path, fileBytes: size, blockLength: bytes.byteLength, blockCrc: crc };
      this.index.set(key, entry);
      this.indexed += size;
      return { outcome: 'written', evicted: victims };
    });
  }

  /** Reads a block back and checks it end to end; a failed check leaves deleting the file to the caller. */
  async read(entry: DiskEntry): Promise<DiskReadResult> {
    let file: Buffer;
    try {
      file = await readFile(entry.path);
    } catch (error) {
      return { ok: false, reason: `unreadable: ${String(error)}` };
    }
    const header = parseDiskHeader(file);
    if (typeof header === 'string') return { ok: false, reason: header };
    const problem = mismatch(header, entry.modelId, entry.hash, file.byteLength);
    if (problem !== undefined) return { ok: false, reason: problem };
    // A plain Uint8Array view, like memory hits (a Buffer would compare and serialize differently).
    const bytes = new Uint8Array(file.buffer, file.byteOffset + header.headerLength, header.blockLength);
    if (blockCrc(bytes) !== header.blockCrc || header.blockCrc !== entry.blockCrc) return { ok: false, reason: 'block checksum mismatch' };
    return { ok: true, bytes };
  }

  /** Takes a block out of the index at once and deletes its file; undefined when it was not there. */
  async remove(key: BlockKey): Promise<DiskEntry | undefined> {
    const entry = this.index.get(key);
    if (entry === undefined) return undefined;
    await this.deleteFile(entry);
    return entry;
  }

  /** Resolves when every write queued so far has finished. */
  idle(): Promise<void> {
    return this.writes.idle();
  }

  /**
   * LRU files whose deletion frees at least `needed` bytes: unleased unpinned ones first, then (if allowed)
   * unleased pinned ones. Undefined when even that is not enough; nothing is chosen then.
   */
  private chooseVictims(needed: number): DiskEntry[] | undefined {
    if (needed <= 0) return [];
    const { guard } = this.o;
    const victims: DiskEntry[] = [];
    let freed = 0;
    const passes = guard.evictPinned ? [false, true] : [false];
    for (const pinnedPass of passes) {
      for (const entry of this.index.values()) {
        if (freed >= needed) break;
        if (guard.isLeased(entry.key) || guard.isPinned(entry.key) !== pinnedPass) continue;
        victims.push(entry);
        freed += entry.fileBytes;
      }
    }
    return freed >= needed ? victims : undefined;
  }

  private async deleteFile(entry: DiskEntry): Promise<void> {
    if (this.index.get(entry.key) !== entry) return;
    this.index.delete(entry.key);
    this.indexed -= entry.fileBytes;
    this.deleting += entry.fileBytes;
    try {
      await rm(entry.path, { force: true });
    } catch (error) {
      this.o.logger.warn({ path: entry.path, err: String(error) }, 'kv-store: could not delete a disk block');
    } finally {
      this.deleting -= entry.fileBytes;
    }
  }

  private async ensureFolder(folder: string): Promise<void> {
    if (this.folders.has(folder)) return;
    await mkdir(folder, { recursive: true });
    this.folders.add(folder);
  }

  private async scan(): Promise<DiskOpenReport> {
    const found: { entry: DiskEntry; mtimeMs: number }[] = [];
    let discarded = 0;
    for (const folder of await readdir(this.o.dir, { withFileTypes: true })) {
      if (!folder.isDirectory() || !MODEL_FOLDER.test(folder.name)) continue;
      const folderPath = join(this.o.dir, folder.name);
      this.folders.add(folderPath);
      for (const file of await readdir(folderPath, { withFileTypes: true })) {
        const checked = await this.checkFile(folder.name, folderPath, file);
        if (checked === 'skip') continue;
        if (typeof checked === 'string') {
          discarded += 1;
          const path = join(folderPath, file.name);
          this.o.logger.warn({ path, reason: checked }, 'kv-store: discarding a bad disk block');
          await rm(path, { force: true });
          continue;
        }
        found.push(checked);
      }
    }
    found.sort((a, b) => a.mtimeMs - b.mtimeMs);
    for (const { entry } of found) {
      this.index.set(entry.key, entry);
      this.indexed += entry.fileBytes;
    }
    let trimmed = 0;
    for (const entry of [...this.index.values()]) {
      if (this.indexed <= this.o.capacityBytes) break;
      await this.deleteFile(entry);
      trimmed += 1;
    }
    if (found.length > 0 || discarded > 0) {
      this.o.logger.info(
        { dir: this.o.dir, blocks: this.index.size, bytes: this.indexed, discarded, trimmed },
        'kv-store: disk tier loaded',
      );
    }
    return { discarded, trimmed };
  }

  /** A valid block file, 'skip' for files that are not ours, or why the file must go. */
  private async checkFile(
    folderName: string,
    folderPath: string,
    file: Dirent,
  ): Promise<{ entry: DiskEntry; mtimeMs: number } | 'skip' | string> {
    if (!file.isFile()) return 'skip';
    if (file.name.endsWith(TEMP_FILE_SUFFIX)) return 'leftover temporary file';
    const named = HASH_FILE.exec(file.name);
    if (named === null) return 'skip';
    const path = join(folderPath, file.name);
    const info = await stat(path);
    const head = this.o.verifyOnOpen ? await readFile(path) : await readPrefix(path, DISK_MAX_HEADER_BYTES);
    const header = parseDiskHeader(head);
    if (typeof header === 'string') return header;
    if (modelFolderName(header.modelId) !== folderName) return 'model id does not match its folder';
    const problem = mismatch(header, header.modelId, named[1]!, info.size);
    if (problem !== undefined) return problem;
    if (this.o.verifyOnOpen && blockCrc(head.subarray(header.headerLength)) !== header.blockCrc) return 'block checksum mismatch';
    const entry: DiskEntry = {
      key: blockKey(header.modelId, header.hash),
      modelId: header.modelId,
      hash: header.hash,
      path,
      fileBytes: info.size,
      blockLength: header.blockLength,
      blockCrc: header.blockCrc,
    };
    return { entry, mtimeMs: info.mtimeMs };
  }
}

function mismatch(header: DiskFileHeader, modelId: string, hash: BlockHash, fileLength: number): string | undefined {
  if (header.modelId !== modelId) return `file holds model ${JSON.stringify(header.modelId)}, expected ${JSON.stringify(modelId)}`;
  if (header.hash !== hash) return `file holds block ${header.hash}, expected ${hash}`;
  if (header.headerLength + header.blockLength !== fileLength) {
    return `file is ${fileLength} bytes, header says ${header.headerLength + header.blockLength} (truncated or torn)`;
  }
  return undefined;
}

async function readPrefix(path: string, maxBytes: number): Promise<Buffer> {
  const file = await open(path, 'r');
  try {
    const buf = Buffer.alloc(maxBytes);
    const { bytesRead } = await file.read(buf, 0, maxBytes, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await file.close();
  }
}
