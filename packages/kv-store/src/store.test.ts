import { crc32 } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { KvStoreError } from './errors';
import { KvStore } from './store';
import { BLOCK, LAYOUT, MODEL, hashOf, makeBlock, putBlocks, sleep } from './test-helpers';
import type { KvStoreEvent } from './types';
import type { KvStoreOptions } from './options';

const open: KvStore[] = [];
async function memoryStore(options: Partial<KvStoreOptions> = {}): Promise<KvStore> {
  // Watermarks at 1: no background eviction, so that only puts evict and tests see exactly what they caused.
  const store = await KvStore.open({ memoryBytes: 8 * BLOCK, highWatermark: 1, lowWatermark: 1, ...options });
  open.push(store);
  return store;
}
afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});

/** The KvStoreError a call throws (synchronously or not). */
async function failure(call: () => unknown): Promise<KvStoreError> {
  try {
    await call();
  } catch (error) {
    if (error instanceof KvStoreError) return error;
    throw error;
  }
  throw new Error('expected a KvStoreError');
}

function isEmpty(store: KvStore): void {
  const s = store.stats();
  expect(s.memory.blocks).toBe(0);
  expect(s.memory.usedBytes).toBe(0);
  expect(store.exists(MODEL, [hashOf(1)])).toEqual([undefined]);
}

describe('two-phase put and get', () => {
  it('round-trips a batch, byte for byte, with a stored event', async () => {
    const store = await memoryStore();
    const events: KvStoreEvent[] = [];
    store.onEvent((e) => events.push(e));
    const blocks = [1, 2, 3].map((n) => makeBlock(hashOf(n), n));
    const begun = await store.beginPut(
      MODEL,
      blocks.map((b, i) => ({ hash: hashOf(i + 1), size: b.byteLength })),
    );
    expect(begun).toMatchObject({ alreadyStored: [], reservedBytes: 3 * BLOCK });
    expect(store.stats().memory).toMatchObject({ blocks: 0, reservedBytes: 3 * BLOCK, usedBytes: 3 * BLOCK });
    blocks.forEach((b, i) => store.writeBlock(begun.putId, hashOf(i + 1), b));
    expect(store.commitPut(begun.putId)).toEqual({ stored: [hashOf(1), hashOf(2), hashOf(3)], alreadyStored: [] });
    expect(events).toEqual([{ kind: 'stored', tier: 'memory', modelId: MODEL, hashes: [hashOf(1), hashOf(2), hashOf(3)] }]);

    const got = await store.get(MODEL, [hashOf(2), hashOf(9), hashOf(1)]);
    expect(got.blocks[0]).toEqual({ bytes: blocks[1], tier: 'memory', crc: crc32(blocks[1]!) >>> 0 });
    expect(got.blocks[1]).toBeUndefined();
    expect(Buffer.from(got.blocks[2]!.bytes).equals(Buffer.from(blocks[0]!))).toBe(true);
    expect(got.leaseId).toBeTypeOf('string');
    expect(store.releaseLease(got.leaseId!)).toBe(true);
    expect(store.releaseLease(got.leaseId!)).toBe(false);
    expect(store.stats()).toMatchObject({
      memory: { blocks: 3, bytes: 3 * BLOCK, reservedBytes: 0, hits: 2, misses: 1, readBytes: 2 * BLOCK, writeBytes: 3 * BLOCK },
      disk: { misses: 1, capacityBytes: 0 },
      puts: { active: 0, committed: 1 },
      activeLeases: 0,
    });
  });

  it('keeps the store its own copy: changing the caller buffer after writeBlock changes nothing', async () => {
    const store = await memoryStore();
    const bytes = makeBlock(hashOf(1));
    const { putId } = await store.beginPut(MODEL, [{ hash: hashOf(1), size: BLOCK }]);
    store.writeBlock(putId, hashOf(1), bytes);
    bytes.fill(0);
    store.commitPut(putId);
    expect((await store.get(MODEL, [hashOf(1)])).blocks[0]?.bytes).toEqual(makeBlock(hashOf(1)));
  });

  it("takes a CRC verified in transit as the block's own, and still refuses a header whose payload CRC lies", async () => {
    const store = await memoryStore();
    const good = makeBlock(hashOf(1));
    const lying = makeBlock(hashOf(2));
    lying[24]! ^= 1; // the header's payload CRC, now wrong; the CRC of the bytes as sent is still right
    const { putId } = await store.beginPut(
      MODEL,
      [1, 2].map((n) => ({ hash: hashOf(n), size: BLOCK })),
    );
    store.writeBlock(putId, hashOf(1), good, crc32(good) >>> 0);
    const err = await failure(() => store.writeBlock(putId, hashOf(2), lying, crc32(lying) >>> 0));
    expect(err).toMatchObject({ code: 'invalid_argument', message: expect.stringMatching(/checksum/) });
    store.writeBlock(putId, hashOf(2), makeBlock(hashOf(2)));
    store.commitPut(putId);
    expect((await store.get(MODEL, [hashOf(1)])).blocks[0]?.crc).toBe(crc32(good) >>> 0);
  });

  it('keeps written blocks invisible until commit, and commits all or nothing', async () => {
    const store = await memoryStore();
    const { putId } = await store.beginPut(
      MODEL,
      [1, 2].map((n) => ({ hash: hashOf(n), size: BLOCK })),
    );
    store.writeBlock(putId, hashOf(1), makeBlock(hashOf(1)));
    expect(store.exists(MODEL, [hashOf(1), hashOf(2)])).toEqual([undefined, undefined]);
    expect((await store.get(MODEL, [hashOf(1)])).blocks).toEqual([undefined]);
    const err = await failure(() => store.commitPut(putId));
    expect(err.code).toBe('failed_precondition');
    expect(err.message).toMatch(/1 of 2 blocks not written \(0000000000000002\)/);
    expect(store.exists(MODEL, [hashOf(1)])).toEqual([undefined]);
    store.writeBlock(putId, hashOf(2), makeBlock(hashOf(2)));
    store.commitPut(putId);
    expect(store.exists(MODEL, [hashOf(1), hashOf(2)])).toEqual(['memory', 'memory']);
    expect((await failure(() => store.commitPut(putId))).code).toBe('not_found');
  });

  it('reclaims a put not committed within its ttl: reservation and bytes gone, never readable', async () => {
    const store = await memoryStore({ sweepIntervalMs: 10 });
    const { putId } = await store.beginPut(MODEL, [{ hash: hashOf(1), size: BLOCK }], { ttlMs: 30 });
    store.writeBlock(putId, hashOf(1), makeBlock(hashOf(1)));
    expect(store.stats().memory.reservedBytes).toBe(BLOCK);
    await sleep(80);
    expect(store.stats().puts).toMatchObject({ active: 0, reclaimed: 1 });
    isEmpty(store);
    const err = await failure(() => store.commitPut(putId));
    expect(err).toMatchObject({ code: 'not_found' });
    expect(err.message).toMatch(/not open/);
  });

  it('reclaims an expired put on touch even before the sweeper runs', async () => {
    let now = 1_000;
    const store = await memoryStore({ clock: () => now });
    const { putId } = await store.beginPut(MODEL, [{ hash: hashOf(1), size: BLOCK }], { ttlMs: 50 });
    now += 50;
    expect((await failure(() => store.writeBlock(putId, hashOf(1), makeBlock(hashOf(1))))).message).toMatch(/expired/);
    expect(store.stats().puts.reclaimed).toBe(1);
    isEmpty(store);
  });

  it('revokes a put', async () => {
    const store = await memoryStore();
    const { putId } = await store.beginPut(MODEL, [{ hash: hashOf(1), size: BLOCK }]);
    store.writeBlock(putId, hashOf(1), makeBlock(hashOf(1)));
    expect(store.revokePut(putId)).toBe(true);
    expect(store.revokePut(putId)).toBe(false);
    expect(store.stats().puts).toMatchObject({ active: 0, revoked: 1 });
    isEmpty(store);
  });

  it('treats re-putting a stored block as a no-op, and keeps it alive until the put ends', async () => {
    const store = await memoryStore({ memoryBytes: 2 * BLOCK });
    await putBlocks(store, [1]);
    const again = await store.beginPut(
      MODEL,
      [1, 2].map((n) => ({ hash: hashOf(n), size: BLOCK })),
    );
    expect(again).toMatchObject({ alreadyStored: [hashOf(1)], reservedBytes: BLOCK });
    // Memory is full (block 1 + the reservation) and block 1 is held by the put: nothing can be evicted.
    expect((await failure(() => store.beginPut(MODEL, [{ hash: hashOf(3), size: BLOCK }]))).code).toBe('resource_exhausted');
    store.writeBlock(again.putId, hashOf(1), makeBlock(hashOf(1))); // optional, ignored
    store.writeBlock(again.putId, hashOf(2), makeBlock(hashOf(2)));
    expect(store.commitPut(again.putId)).toEqual({ stored: [hashOf(2)], alreadyStored: [hashOf(1)] });
    expect(store.stats().memory).toMatchObject({ blocks: 2, bytes: 2 * BLOCK, reservedBytes: 0 });

    // Two puts racing for the same block (each reserving room, which evicts blocks 1 and 2): the second commit
    // finds it stored and gives its reservation back.
    const a = await store.beginPut(MODEL, [{ hash: hashOf(3), size: BLOCK }]);
    const b = await store.beginPut(MODEL, [{ hash: hashOf(3), size: BLOCK }]);
    store.writeBlock(a.putId, hashOf(3), makeBlock(hashOf(3)));
    store.writeBlock(b.putId, hashOf(3), makeBlock(hashOf(3)));
    expect(store.commitPut(a.putId).stored).toEqual([hashOf(3)]);
    expect(store.commitPut(b.putId)).toEqual({ stored: [], alreadyStored: [hashOf(3)] });
    expect(store.stats().memory).toMatchObject({ blocks: 1, bytes: BLOCK, reservedBytes: 0 });
  });
});

describe('placement', () => {
  it('hands a put store buffers to read its blocks into, kept without a copy; once per put, only for awaited blocks', async () => {
    const store = await memoryStore();
    await putBlocks(store, [1]);
    const blocks = [1, 2, 3].map((n) => makeBlock(hashOf(n), n));
    const begun = await store.beginPut(
      MODEL,
      blocks.map((b, i) => ({ hash: hashOf(i + 1), size: b.byteLength })),
    );
    expect(begun.alreadyStored).toEqual([hashOf(1)]);
    const wanted = [2, 3].map((n) => ({ hash: hashOf(n), length: BLOCK }));
    // Not for a block the store already holds, a wrong size, a hash twice, or an unknown put.
    expect(store.placement(begun.putId, [{ hash: hashOf(1), length: BLOCK }])).toBeUndefined();
    expect(store.placement(begun.putId, [{ hash: hashOf(2), length: BLOCK - 1 }])).toBeUndefined();
    expect(store.placement(begun.putId, [wanted[0]!, wanted[0]!])).toBeUndefined();
    expect(store.placement('no-such-put', wanted)).toBeUndefined();
    const bufs = store.placement(begun.putId, wanted)!;
    expect(bufs.map((b) => b.byteLength)).toEqual([BLOCK, BLOCK]);
    // Fresh buffers for blocks in a row are neighbours in one arena: a transfer reads them with one read.
    expect(bufs[1]!.buffer).toBe(bufs[0]!.buffer);
    expect(bufs[1]!.byteOffset).toBe(bufs[0]!.byteOffset + BLOCK);
    expect(store.placement(begun.putId, wanted)).toBeUndefined(); // a second transfer never shares them
    bufs[0]!.set(blocks[1]!); // what the transfer engine does: the bytes land in the store's buffer
    store.writeBlock(begun.putId, hashOf(2), bufs[0]!);
    store.writeBlock(begun.putId, hashOf(3), blocks[2]!); // not through the placed buffer: copied
    store.commitPut(begun.putId);
    const got = await store.get(MODEL, [hashOf(2), hashOf(3)]);
    expect(got.blocks[0]!.bytes).toBe(bufs[0]); // kept as is
    expect(got.blocks[1]!.bytes).not.toBe(blocks[2]);
    expect(got.blocks[1]!.bytes).not.toBe(bufs[1]); // the placed buffer a stray write may still reach is not used
    expect(Buffer.from(got.blocks[1]!.bytes).equals(Buffer.from(blocks[2]!))).toBe(true);
  });
});

describe('bad requests get a clear typed error and store nothing', () => {
  it('refuses bad entries at beginPut', async () => {
    const store = await memoryStore({ maxBlockBytes: 2 * BLOCK, models: [{ id: MODEL, layout: LAYOUT }, { id: 'other' }] });
    const cases: [() => unknown, string, RegExp][] = [
      [() => store.beginPut(MODEL, [{ hash: 'ABCDEF0123456789', size: BLOCK }]), 'invalid_argument', /16 lowercase hex/],
      [() => store.beginPut(MODEL, [{ hash: 'abc', size: BLOCK }]), 'invalid_argument', /16 lowercase hex/],
      [() => store.beginPut(MODEL, []), 'invalid_argument', /at least one block/],
      [() => store.beginPut('other', [{ hash: hashOf(1), size: 3 * BLOCK }]), 'invalid_argument', /over this store's limit of 2128/],
      [() => store.beginPut(MODEL, [{ hash: hashOf(1), size: BLOCK + 4 }]), 'invalid_argument', /a block of this model is 1064/],
      [
        () =>
          store.beginPut(MODEL, [
            { hash: hashOf(1), size: BLOCK },
            { hash: hashOf(1), size: BLOCK },
          ]),
        'invalid_argument',
        /appears twice/,
      ],
      [
        () => store.beginPut('model-b', [{ hash: hashOf(1), size: BLOCK }]),
        'not_found',
        /model "model-b" is not served by this store \(it serves test\/model-a, other\)/,
      ],
      [() => store.beginPut('bad model', [{ hash: hashOf(1), size: BLOCK }]), 'invalid_argument', /model id/],
      [() => store.beginPut(MODEL, [{ hash: hashOf(1), size: BLOCK }], { ttlMs: 0 }), 'invalid_argument', /ttlMs/],
      [() => store.get('model-b', [hashOf(1)]), 'not_found', /not served/],
      [() => store.get(MODEL, ['nope']), 'invalid_argument', /16 lowercase hex/],
    ];
    for (const [call, code, message] of cases) {
      const err = await failure(call);
      expect(err.code, String(message)).toBe(code);
      expect(err.message).toMatch(message);
    }
    expect(store.stats().puts.active).toBe(0);
    isEmpty(store);
  });

  it('refuses bad bytes at writeBlock; the put stays open and commits nothing', async () => {
    const store = await memoryStore({ models: [{ id: MODEL, layout: LAYOUT }, { id: 'wide' }] });
    const { putId } = await store.beginPut(MODEL, [{ hash: hashOf(1), size: BLOCK }]);
    const garbage = new Uint8Array(BLOCK).fill(7);
    const flipped = makeBlock(hashOf(1));
    flipped[500]! ^= 1;
    const otherModel = makeBlock(hashOf(1), 1, { ...LAYOUT, numLayers: 1, headDim: 16 }); // same size, other shape
    expect(otherModel.byteLength).toBe(BLOCK);
    const cases: [() => unknown, RegExp][] = [
      [() => store.writeBlock(putId, hashOf(1), garbage), /bad magic/],
      [() => store.writeBlock(putId, hashOf(1), flipped), /checksum mismatch/],
      [() => store.writeBlock(putId, hashOf(1), otherModel), /shape 1x2x16x4 does not match the model's 2x2x8x4/],
      [() => store.writeBlock(putId, hashOf(1), makeBlock(hashOf(2))), /header names hash 0000000000000002, not 0000000000000001/],
      [() => store.writeBlock(putId, hashOf(1), makeBlock(hashOf(1)).subarray(0, 1000)), /1000 bytes, but the put declared 1064/],
      [() => store.writeBlock(putId, hashOf(2), makeBlock(hashOf(2))), /not part of put/],
    ];
    for (const [call, message] of cases) {
      const err = await failure(call);
      expect(err.code).toBe('invalid_argument');
      expect(err.message).toMatch(message);
    }
    expect((await failure(() => store.commitPut(putId))).code).toBe('failed_precondition');
    expect((await failure(() => store.writeBlock('no-such-put', hashOf(1), makeBlock(hashOf(1))))).code).toBe('not_found');
    store.revokePut(putId);
    isEmpty(store);

    // A model without a configured layout accepts any self-consistent shape.
    const wide = await store.beginPut('wide', [{ hash: hashOf(1), size: BLOCK }]);
    store.writeBlock(wide.putId, hashOf(1), otherModel);
    store.commitPut(wide.putId);
    expect(store.exists('wide', [hashOf(1)])).toEqual(['memory']);
    expect(store.exists(MODEL, [hashOf(1)])).toEqual([undefined]); // keyed by (modelId, hash)
  });

  it('refuses a put larger than the whole memory tier', async () => {
    const store = await memoryStore({ memoryBytes: 2 * BLOCK });
    const err = await failure(() =>
      store.beginPut(
        MODEL,
        [1, 2, 3].map((n) => ({ hash: hashOf(n), size: BLOCK })),
      ),
    );
    expect(err).toMatchObject({ code: 'resource_exhausted' });
    expect(err.message).toMatch(/needs 3192 bytes but the memory tier holds only 2128/);
  });
});

describe('checksums on every read', () => {
  it('drops a block corrupted in memory and reports it missing', async () => {
    const store = await memoryStore();
    await putBlocks(store, [1, 2]);
    const events: KvStoreEvent[] = [];
    store.onEvent((e) => events.push(e));
    const first = await store.get(MODEL, [hashOf(1)]);
    first.blocks[0]!.bytes[100]! ^= 0xff; // the store's own buffer: this corrupts the stored block
    const again = await store.get(MODEL, [hashOf(1), hashOf(2)]);
    expect(again.blocks[0]).toBeUndefined();
    expect(again.blocks[1]?.tier).toBe('memory');
    expect(store.exists(MODEL, [hashOf(1)])).toEqual([undefined]);
    expect(store.stats().memory).toMatchObject({ corruptDropped: 1, blocks: 1 });
    expect(events).toEqual([{ kind: 'removed', tier: 'memory', modelId: MODEL, hashes: [hashOf(1)] }]);
  });
});

describe('read leases', () => {
  it('keep a block from eviction while held, not after release', async () => {
    const store = await memoryStore({ memoryBytes: 3 * BLOCK });
    for (const n of [1, 2, 3]) await putBlocks(store, [n]);
    const { leaseId } = await store.get(MODEL, [hashOf(1)]); // LRU order now 2, 3, 1
    for (const n of [4, 5, 6]) await putBlocks(store, [n]); // evict 2, then 3, then 4 (1 is leased)
    expect(store.exists(MODEL, [1, 2, 3, 4, 5, 6].map(hashOf))).toEqual(['memory', undefined, undefined, undefined, 'memory', 'memory']);
    store.releaseLease(leaseId!);
    await putBlocks(store, [7]);
    expect(store.exists(MODEL, [hashOf(1)])).toEqual([undefined]);
    expect(store.stats().memory.evictions).toBe(4);
  });

  it('make a full tier refuse a put until the lease lapses', async () => {
    const store = await memoryStore({ memoryBytes: BLOCK });
    await putBlocks(store, [1]);
    await store.get(MODEL, [hashOf(1)], { leaseMs: 30 });
    const err = await failure(() => putBlocks(store, [2]));
    expect(err.code).toBe('resource_exhausted');
    expect(err.message).toMatch(/held by read leases/);
    expect(store.exists(MODEL, [hashOf(1)])).toEqual(['memory']);
    await sleep(50);
    await putBlocks(store, [2]);
    expect(store.exists(MODEL, [hashOf(1), hashOf(2)])).toEqual([undefined, 'memory']);
  });

  it("recycle a block's buffer once it left memory and its reader released it, never after a lapse", async () => {
    const store = await memoryStore();
    await putBlocks(store, [1]);
    const r1 = await store.get(MODEL, [hashOf(1)]);
    const b1 = r1.blocks[0]!.bytes;
    store.releaseLease(r1.leaseId!);
    await store.remove(MODEL, [hashOf(1)]);
    await putBlocks(store, [2]);
    const r2 = await store.get(MODEL, [hashOf(2)]);
    expect(r2.blocks[0]!.bytes.buffer).toBe(b1.buffer); // the same memory, now holding block 2
    expect(r2.blocks[0]!.bytes).toEqual(makeBlock(hashOf(2), 2));
    store.releaseLease(r2.leaseId!);

    await putBlocks(store, [3]);
    const r3 = await store.get(MODEL, [hashOf(3)], { leaseMs: 20 });
    const b3 = r3.blocks[0]!.bytes;
    await sleep(40); // the lease lapses with the reader never saying it was done
    await store.remove(MODEL, [hashOf(3)]);
    await putBlocks(store, [4]);
    expect((await store.get(MODEL, [hashOf(4)])).blocks[0]!.bytes.buffer).not.toBe(b3.buffer);
    expect(b3).toEqual(makeBlock(hashOf(3), 3)); // what that reader holds is intact
  });

  it('make remove() keep the block and say so', async () => {
    const store = await memoryStore();
    await putBlocks(store, [1, 2]);
    const { leaseId } = await store.get(MODEL, [hashOf(1)]);
    expect(await store.remove(MODEL, [hashOf(1), hashOf(2), hashOf(3)])).toEqual({ removed: [hashOf(2)], leased: [hashOf(1)] });
    store.releaseLease(leaseId!);
    expect(await store.remove(MODEL, [hashOf(1)])).toEqual({ removed: [hashOf(1)], leased: [] });
    isEmpty(store);
  });
});

describe('soft pins', () => {
  it('are skipped by LRU eviction, and evicted LRU-first when only pinned blocks are left', async () => {
    const store = await memoryStore({ memoryBytes: 3 * BLOCK });
    await putBlocks(store, [1, 2, 3]);
    expect(store.pin(MODEL, [hashOf(1), hashOf(9)], 10_000).pinned).toEqual([hashOf(1)]);
    await putBlocks(store, [4]); // 1 is the oldest but pinned: 2 goes
    expect(store.exists(MODEL, [1, 2, 3, 4].map(hashOf))).toEqual(['memory', undefined, 'memory', 'memory']);
    store.pin(MODEL, [hashOf(3), hashOf(4)], 10_000);
    await putBlocks(store, [5]); // everything pinned: the least recently used pinned block goes
    expect(store.exists(MODEL, [1, 3, 4, 5].map(hashOf))).toEqual([undefined, 'memory', 'memory', 'memory']);
  });

  it('make a put fail instead when pinned blocks may not be evicted', async () => {
    const store = await memoryStore({ memoryBytes: 2 * BLOCK, evictPinnedWhenFull: false });
    await putBlocks(store, [1, 2]);
    store.pin(MODEL, [hashOf(1), hashOf(2)], 30);
    const err = await failure(() => putBlocks(store, [3]));
    expect(err.code).toBe('resource_exhausted');
    expect(err.message).toMatch(/or pins/);
    await sleep(50); // the pins lapse
    await putBlocks(store, [3]);
    expect(store.exists(MODEL, [1, 2, 3].map(hashOf))).toEqual([undefined, 'memory', 'memory']);
  });
});

describe('lookups', () => {
  it('longestPrefix counts the leading blocks held, with their tiers; exists answers per hash', async () => {
    const store = await memoryStore();
    await putBlocks(store, [1, 2, 3, 5]);
    const chain = [1, 2, 3, 4, 5].map(hashOf);
    expect(store.longestPrefix(MODEL, chain)).toEqual({ length: 3, tiers: ['memory', 'memory', 'memory'] });
    expect(store.longestPrefix(MODEL, [hashOf(4)])).toEqual({ length: 0, tiers: [] });
    expect(store.longestPrefix(MODEL, [])).toEqual({ length: 0, tiers: [] });
    expect(store.exists(MODEL, chain)).toEqual(['memory', 'memory', 'memory', undefined, 'memory']);
    await store.remove(MODEL, [hashOf(2)]);
    expect(store.longestPrefix(MODEL, chain).length).toBe(1);
  });

  it('snapshot lists everything held as stored events', async () => {
    const store = await memoryStore();
    await putBlocks(store, [1, 2]);
    await putBlocks(store, [3], 'other-model');
    expect(store.snapshot()).toEqual([
      { kind: 'stored', tier: 'memory', modelId: MODEL, hashes: [hashOf(1), hashOf(2)] },
      { kind: 'stored', tier: 'memory', modelId: 'other-model', hashes: [hashOf(3)] },
    ]);
  });

  it('refuses calls after close', async () => {
    const store = await memoryStore();
    await store.close();
    expect((await failure(() => store.get(MODEL, [hashOf(1)]))).code).toBe('unavailable');
  });
});
