import { readdirSync, statSync, writeFileSync, readFileSync, truncateSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { blockFilePath, diskFileBytes } from './disk-file';
import { KvStore } from './store';
import { BLOCK, MODEL, hashOf, makeBlock, putBlocks, tempDir } from './test-helpers';
import type { KvStoreEvent, KvStoreStats } from './types';
import type { KvStoreOptions } from './options';

const FILE = diskFileBytes(MODEL, BLOCK);
const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

async function tieredStore(options: Partial<KvStoreOptions> = {}): Promise<{ store: KvStore; dir: string }> {
  const { path: dir, remove } = tempDir();
  const store = await KvStore.open({
    memoryBytes: 4 * BLOCK,
    diskDir: dir,
    diskBytes: 8 * FILE,
    highWatermark: 1,
    lowWatermark: 1,
    ...options,
  });
  cleanup.push(remove, () => store.close());
  return { store, dir };
}

/** Bytes of every file under `dir` (block files, temp files, anything). */
function folderBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += statSync(join(entry.parentPath, entry.name)).size;
  }
  return total;
}

function withinBudgets(s: KvStoreStats): void {
  expect(s.memory.usedBytes).toBeLessThanOrEqual(s.memory.capacityBytes);
  expect(s.disk.usedBytes).toBeLessThanOrEqual(s.disk.capacityBytes);
}

describe('memory → disk demotion', () => {
  it('past the high watermark, demotes LRU blocks to disk down to the low watermark', async () => {
    const { store } = await tieredStore({ memoryBytes: 10 * BLOCK, highWatermark: 0.8, lowWatermark: 0.5 });
    const events: KvStoreEvent[] = [];
    store.onEvent((e) => events.push(e));
    for (let n = 1; n <= 9; n++) await putBlocks(store, [n]);
    await store.whenIdle();
    const s = store.stats();
    expect(s.memory.blocks).toBe(5);
    expect(s.disk.blocks).toBe(4);
    expect(s.demotions).toBe(4);
    expect(s.memory.evictions).toBe(4);
    expect(s.disk).toMatchObject({ bytes: 4 * FILE, writeBytes: 4 * FILE, reservedBytes: 0 });
    expect(store.exists(MODEL, [1, 2, 3, 4, 5, 9].map(hashOf))).toEqual(['disk', 'disk', 'disk', 'disk', 'memory', 'memory']);
    expect(events.filter((e) => e.tier === 'disk')).toEqual(
      [1, 2, 3, 4].map((n) => ({ kind: 'stored', tier: 'disk', modelId: MODEL, hashes: [hashOf(n)] })),
    );
  });

  it('reads disk blocks back, verified, and promotes them when memory has room', async () => {
    const { store } = await tieredStore({ memoryBytes: 2 * BLOCK, highWatermark: 1 });
    await putBlocks(store, [1, 2]);
    await putBlocks(store, [3, 4]); // demotes 1 and 2
    await store.whenIdle();
    expect(store.exists(MODEL, [1, 2, 3].map(hashOf))).toEqual(['disk', 'disk', 'memory']);
    const got = await store.get(MODEL, [hashOf(1), hashOf(2)]);
    expect(got.blocks.map((b) => b?.tier)).toEqual(['disk', 'disk']);
    expect(got.blocks[0]?.bytes).toEqual(makeBlock(hashOf(1), 1));
    expect(store.stats().disk).toMatchObject({ hits: 2, readBytes: 2 * BLOCK });
    expect(store.stats().promotions).toBe(0); // memory is full: no promotion
    store.releaseLease(got.leaseId!);

    await store.remove(MODEL, [hashOf(3), hashOf(4)]);
    await store.get(MODEL, [hashOf(1)]);
    expect(store.stats().promotions).toBe(1);
    expect(store.exists(MODEL, [hashOf(1)])).toEqual(['memory']);
    expect(store.longestPrefix(MODEL, [1, 2, 3].map(hashOf))).toEqual({ length: 2, tiers: ['memory', 'disk'] });
  });

  it('drops without a disk tier', async () => {
    const store = await KvStore.open({ memoryBytes: 2 * BLOCK, highWatermark: 1, lowWatermark: 1 });
    cleanup.push(() => store.close());
    await putBlocks(store, [1, 2]);
    await putBlocks(store, [3]);
    expect(store.exists(MODEL, [1, 2, 3].map(hashOf))).toEqual([undefined, 'memory', 'memory']);
    expect(store.stats()).toMatchObject({ demotions: 0, memory: { evictions: 1 } });
  });

  it('reports a disk block whose file was corrupted as missing, and deletes the file', async () => {
    const { store, dir } = await tieredStore({ memoryBytes: BLOCK, promoteOnRead: false });
    await putBlocks(store, [1]);
    await putBlocks(store, [2]); // demotes 1
    await store.whenIdle();
    const path = blockFilePath(dir, MODEL, hashOf(1));
    const bytes = readFileSync(path);
    bytes[bytes.length - 10]! ^= 0x01;
    writeFileSync(path, bytes);
    const events: KvStoreEvent[] = [];
    store.onEvent((e) => events.push(e));
    const got = await store.get(MODEL, [hashOf(1)]);
    expect(got.blocks).toEqual([undefined]);
    expect(got.leaseId).toBeTypeOf('string');
    expect(store.stats()).toMatchObject({ activeLeases: 1, disk: { corruptDropped: 1, blocks: 0, hits: 0, misses: 1 } });
    expect(existsSync(path)).toBe(false);
    expect(events).toEqual([{ kind: 'removed', tier: 'disk', modelId: MODEL, hashes: [hashOf(1)] }]);
  });

  it('survives a flood far larger than both budgets: never over budget, demoting then dropping LRU', async () => {
    const memoryBytes = 16 * BLOCK;
    const diskBytes = 24 * FILE;
    const { store, dir } = await tieredStore({ memoryBytes, diskBytes, highWatermark: 0.9, lowWatermark: 0.6 });
    const seen = { stored: { memory: 0, disk: 0 }, removed: { memory: 0, disk: 0 } };
    let observations = 0;
    const observe = (): void => {
      withinBudgets(store.stats());
      observations += 1;
    };
    store.onEvent((e) => {
      seen[e.kind][e.tier] += e.hashes.length;
      observe();
    });
    const timer = setInterval(observe, 1);
    cleanup.push(() => clearInterval(timer));

    const PUTS = 300; // 600 blocks ≈ 38× memory, 25× disk
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < PUTS) {
        const n = next++;
        const hashes = [2 * n, 2 * n + 1].map(hashOf);
        const blocks = hashes.map((h, i) => makeBlock(h, 2 * n + i));
        const { putId } = await store.beginPut(
          MODEL,
          hashes.map((hash) => ({ hash, size: BLOCK })),
        );
        observe();
        blocks.forEach((b, i) => store.writeBlock(putId, hashes[i]!, b));
        store.commitPut(putId);
        observe();
        if (n % 25 === 0) expect(folderBytes(dir)).toBeLessThanOrEqual(diskBytes);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    await store.whenIdle();
    clearInterval(timer);
    observe();

    const s = store.stats();
    expect(observations).toBeGreaterThan(2 * PUTS);
    expect(s.puts.committed).toBe(PUTS);
    expect(s.memory.blocks).toBeLessThanOrEqual(16);
    expect(s.disk.blocks).toBeGreaterThan(12);
    expect(s.disk.blocks).toBeLessThanOrEqual(24);
    expect(s.demotions).toBe(2 * PUTS - s.memory.blocks); // with a disk tier, every eviction from memory is a demotion
    expect(s.memory.evictions).toBe(s.demotions);
    expect(s.disk.evictions).toBe(s.demotions - s.disk.blocks);
    expect(seen.stored.memory).toBe(2 * PUTS);
    expect(seen.stored.disk).toBe(s.demotions);
    expect(seen.removed.disk).toBe(s.disk.evictions);
    expect(folderBytes(dir)).toBe(s.disk.bytes);
    // The oldest blocks are gone, the newest are in memory, and every held block reads back intact.
    expect(store.exists(MODEL, [0, 1, 2, 3].map(hashOf))).toEqual([undefined, undefined, undefined, undefined]);
    expect(store.exists(MODEL, [hashOf(2 * PUTS - 1)])).toEqual(['memory']);
    const all = Array.from({ length: 2 * PUTS }, (_, i) => hashOf(i));
    const held = all.filter((h) => store.exists(MODEL, [h])[0] !== undefined);
    expect(held.length).toBe(s.memory.blocks + s.disk.blocks);
    const got = await store.get(MODEL, held);
    got.blocks.forEach((b, i) => expect(b?.bytes).toEqual(makeBlock(held[i]!, parseInt(held[i]!, 16))));
    expect(store.stats().memory.corruptDropped + store.stats().disk.corruptDropped).toBe(0);
  });
});

describe('restart', () => {
  it('rebuilds the disk index by scanning, discarding truncated, corrupt and half-written files', async () => {
    const { path: dir, remove } = tempDir();
    cleanup.push(remove);
    const options = { memoryBytes: 8 * BLOCK, diskDir: dir, diskBytes: 8 * FILE };
    const first = await KvStore.open(options);
    await putBlocks(first, [1, 2, 3, 4, 5]);
    await first.close({ flushToDisk: true });
    expect(folderBytes(dir)).toBe(5 * FILE);

    const truncated = blockFilePath(dir, MODEL, hashOf(2));
    truncateSync(truncated, FILE - 100);
    const corrupt = blockFilePath(dir, MODEL, hashOf(3));
    const bytes = readFileSync(corrupt);
    bytes[FILE - 1]! ^= 0x80;
    writeFileSync(corrupt, bytes);
    const torn = `${blockFilePath(dir, MODEL, hashOf(6))}.123.1.tmp`;
    writeFileSync(torn, bytes.subarray(0, 300));
    const foreign = join(dir, 'README');
    writeFileSync(foreign, 'not ours');

    const second = await KvStore.open(options);
    cleanup.push(() => second.close());
    expect(second.stats().disk).toMatchObject({ blocks: 3, bytes: 3 * FILE, corruptDropped: 3 });
    expect([truncated, corrupt, torn].map(existsSync)).toEqual([false, false, false]);
    expect(existsSync(foreign)).toBe(true);
    expect(second.exists(MODEL, [1, 2, 3, 4, 5].map(hashOf))).toEqual(['disk', undefined, undefined, 'disk', 'disk']);
    const got = await second.get(MODEL, [hashOf(1), hashOf(5)]);
    expect(got.blocks.map((b) => b?.tier)).toEqual(['disk', 'disk']);
    expect(got.blocks[1]?.bytes).toEqual(makeBlock(hashOf(5), 5));
    // The two disk reads run concurrently, so their promotions reach memory in either order.
    const snap = second.snapshot().map((e) => ({ ...e, hashes: [...e.hashes].sort() }));
    expect(snap).toEqual([
      { kind: 'stored', tier: 'memory', modelId: MODEL, hashes: [hashOf(1), hashOf(5)] },
      { kind: 'stored', tier: 'disk', modelId: MODEL, hashes: [hashOf(4)] },
    ]);
  });

  it('with verifyDiskOnOpen off, checks headers at open and bodies on read', async () => {
    const { path: dir, remove } = tempDir();
    cleanup.push(remove);
    const options = { memoryBytes: 8 * BLOCK, diskDir: dir, diskBytes: 8 * FILE, verifyDiskOnOpen: false };
    const first = await KvStore.open(options);
    await putBlocks(first, [1, 2]);
    await first.close({ flushToDisk: true });
    const corrupt = blockFilePath(dir, MODEL, hashOf(2));
    const bytes = readFileSync(corrupt);
    bytes[FILE - 1]! ^= 0x80;
    writeFileSync(corrupt, bytes);

    const second = await KvStore.open(options);
    cleanup.push(() => second.close());
    expect(second.stats().disk.blocks).toBe(2);
    expect((await second.get(MODEL, [hashOf(1), hashOf(2)])).blocks.map((b) => b?.tier)).toEqual(['disk', undefined]);
    expect(second.stats().disk).toMatchObject({ blocks: 1, corruptDropped: 1 });
    expect(existsSync(corrupt)).toBe(false);
  });

  it('trims a folder larger than a smaller new budget, oldest first', async () => {
    const { path: dir, remove } = tempDir();
    cleanup.push(remove);
    const first = await KvStore.open({ memoryBytes: 8 * BLOCK, diskDir: dir, diskBytes: 8 * FILE });
    for (const n of [1, 2, 3, 4]) {
      await putBlocks(first, [n]);
    }
    await first.close({ flushToDisk: true });
    const second = await KvStore.open({ memoryBytes: 8 * BLOCK, diskDir: dir, diskBytes: 2 * FILE });
    cleanup.push(() => second.close());
    expect(second.stats().disk).toMatchObject({ blocks: 2, evictions: 2 });
    expect(folderBytes(dir)).toBe(2 * FILE);
  });
});
