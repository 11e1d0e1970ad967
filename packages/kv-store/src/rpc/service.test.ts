// The kv-store as a network service: puts and gets through the transfer engine over each transport, and
// what it does with bad input, floods and abandoned puts.
import { Server, ServerCredentials, credentials, makeGenericClientConstructor } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectControlPlane, InProcessHub, silentLogger, type ControlPlane, type KvEventBatch } from '@pdserve/control-plane';
import { crc32 } from '@pdserve/kv-cache';
import { TRANSFER_GRPC_OPTIONS, TransferReceiver, TransferSender, type IncomingTransfer } from '@pdserve/transfer';
import { InProcessBlockDirectory } from '../directory';
import { BLOCK, LAYOUT, MODEL, hashOf, makeBlock, sleep } from '../test-helpers';
import { KvStoreCallError, KvStoreClient } from './client';
import { kvStoreService } from './proto';
import { startKvStoreService, type KvStoreService } from './service';

let cp: ControlPlane;
let svc: KvStoreService;
let client: KvStoreClient;
const sender = new TransferSender();
let sink: TransferReceiver;
let sinkAddress: string;
const sinkServer = new Server(TRANSFER_GRPC_OPTIONS);
let transferCalls = 0;
const arrived = new Map<string, (t: { hash: string; data: Uint8Array }[]) => void>();
const directory = new InProcessBlockDirectory();
const batches: KvEventBatch[] = [];
const MEMORY = 40 * BLOCK;

const blocks = (ns: readonly number[]) => ns.map((n) => ({ hash: hashOf(n), data: makeBlock(hashOf(n), n) }));

/** A get the way a worker makes it over tcp: pulled by our receiver (KvStoreClient.pull). */
async function pullBlocks(hashes: string[], opts: { verify?: boolean; sink?: string; source?: string } = {}) {
  const transferId = `pull-${Math.random().toString(16).slice(2)}`;
  const got = new Promise<{ hash: string; data: Uint8Array }[]>((resolve) => arrived.set(transferId, resolve));
  const res = await client.pull(
    sink,
    {
      model_id: MODEL,
      hashes,
      lease_ms: 0,
      verify: opts.verify,
      sink: { grpc_address: opts.sink ?? sinkAddress, transfer_id: transferId, transport: 'auto' },
    },
    { source: opts.source },
  );
  return { res, blocks: res.blocks > 0 ? await got : [] };
}

async function waitFor(what: string, ok: () => boolean, ms = 2_000): Promise<void> {
  for (const end = Date.now() + ms; !ok(); await sleep(10)) if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
}

async function fetchBlocks(hashes: string[], transport: 'auto' | 'tcp' | 'shm' | 'grpc' = 'auto') {
  const transferId = `get-${Math.random().toString(16).slice(2)}`;
  const got = new Promise<{ hash: string; data: Uint8Array }[]>((resolve) => arrived.set(transferId, resolve));
  const res = await client.get({
    model_id: MODEL,
    hashes,
    lease_ms: 0,
    sink: { grpc_address: sinkAddress, transfer_id: transferId, transport },
  });
  return { res, blocks: res.blocks > 0 ? await got : [] };
}

beforeAll(async () => {
  cp = await connectControlPlane({ cluster: 'kvs', hub: new InProcessHub(), logger: silentLogger });
  cp.events.subscribeKv((b) => void batches.push(b));
  svc = await startKvStoreService({
    nodeId: 'store-0',
    controlPlane: cp,
    logger: silentLogger,
    memoryBytes: MEMORY,
    models: [{ id: MODEL, layout: LAYOUT }],
    directory,
    storeOptions: { putTtlMs: 300, sweepIntervalMs: 50 },
  });
  client = new KvStoreClient(svc.grpcAddress);
  sink = await TransferReceiver.start({
    onTransfer: (t: IncomingTransfer) => arrived.get(t.transferId)?.(t.blocks.map((b) => ({ hash: b.hash, data: b.data.slice() }))),
  });
  // The sink's KvTransfer service, counting the Transfer calls made to it.
  const { definition, implementation } = sink.grpcService();
  const transfer = implementation.Transfer as (call: unknown) => void;
  sinkServer.addService(definition, {
    ...implementation,
    Transfer: (call: unknown) => {
      transferCalls += 1;
      transfer(call);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    sinkServer.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  sinkAddress = `127.0.0.1:${port}`;
  // The test plays a worker of MODEL: the store sends gets only to, and pulls puts only from, registered services.
  await cp.registry.register({
    id: 'test-worker',
    role: 'decode',
    grpcAddress: sinkAddress,
    adminAddress: '',
    model: MODEL,
    capacity: { totalBlocks: 0, blockSize: 0, maxNumSeqs: 0 },
    dataAddress: await sender.listen(),
    incarnation: 'test',
    startedAt: Date.now(),
  });
});

afterAll(async () => {
  client?.close();
  sender.close();
  await sink?.close();
  sinkServer.forceShutdown();
  await svc?.close();
  await cp?.close();
});

describe('kv-store service', () => {
  it('sends a get only to a registered worker of the model: another sink is refused and never dialed', async () => {
    let stolen = 0;
    const stranger = await TransferReceiver.start({ onTransfer: () => void (stolen += 1) });
    const address = await stranger.serveGrpc();
    try {
      await client.put(sender, MODEL, blocks([900]));
      const err = await client
        .get({
          model_id: MODEL,
          hashes: [hashOf(900)],
          lease_ms: 0,
          sink: { grpc_address: address, transfer_id: 'stolen', transport: 'auto' },
        })
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'PERMISSION_DENIED', message: expect.stringContaining('is not a registered worker') });
      expect(stolen).toBe(0);
      // The same get to the registered sink is served.
      expect((await fetchBlocks([hashOf(900)])).blocks.map((b) => b.hash)).toEqual([hashOf(900)]);
    } finally {
      await stranger.close();
    }
  });

  it('a pulled get: one Get call and no Transfer call; the read lease ends with the worker’s word on the data connection', async () => {
    const put = blocks([910, 911, 912]);
    await client.put(sender, MODEL, put);
    const calls = transferCalls;
    // The reply is the offer: the blocks stay leased (not evictable, not removable) until they are pulled and admitted.
    const reply = await client.get({
      model_id: MODEL,
      hashes: [hashOf(910), hashOf(9090), hashOf(911), hashOf(912)],
      lease_ms: 0,
      sink: { grpc_address: sinkAddress, transfer_id: 'pulled-by-hand', transport: 'tcp', pull: true },
    });
    expect(reply).toMatchObject({ tiers: ['memory', '', 'memory', 'memory'], blocks: 3, bytes: 3 * BLOCK, transport: 'tcp' });
    expect(reply.block_lengths).toEqual([BLOCK, BLOCK, BLOCK]);
    expect(reply.tcp_token.byteLength).toBe(8);
    expect(svc.store.stats().activeLeases).toBe(1);
    expect((await client.remove(MODEL, [hashOf(910)])).leased).toEqual([hashOf(910)]);
    const got = new Promise<{ hash: string; data: Uint8Array }[]>((resolve) => arrived.set('pulled-by-hand', resolve));
    await sink.pull({
      transferId: 'pulled-by-hand',
      source: reply.tcp_source,
      token: reply.tcp_token,
      blocks: put.map((b) => ({ hash: b.hash, length: BLOCK })),
    });
    (await got).forEach((b, i) => expect(Buffer.compare(b.data, put[i]!.data)).toBe(0));
    await waitFor('the lease to end', () => svc.store.stats().activeLeases === 0);
    expect((await client.remove(MODEL, [hashOf(910)])).removed).toEqual([hashOf(910)]);
    // The same through KvStoreClient.pull, as a worker gets: still no Transfer call.
    const again = await pullBlocks([hashOf(911), hashOf(912)]);
    expect(again.blocks.map((b) => b.hash)).toEqual([hashOf(911), hashOf(912)]);
    expect(transferCalls).toBe(calls);
    // Pushed, the store calls the sink: one Transfer call per get.
    await fetchBlocks([hashOf(911)], 'tcp');
    expect(transferCalls).toBe(calls + 1);
    await waitFor('the leases to end', () => svc.store.stats().activeLeases === 0);
    expect((await client.stats()).blocks_sent).toBeGreaterThanOrEqual(6);
  });

  it('a pipelined pulled get: the pull asked for with the Get (the store’s data port from its record) arrives the same', async () => {
    const put = blocks([915, 916]);
    await client.put(sender, MODEL, put);
    const source = (await cp.registry.list()).find((r) => r.id === 'store-0')!.dataAddress!;
    const calls = transferCalls;
    for (let i = 0; i < 3; i++) {
      const got = await pullBlocks([hashOf(915), hashOf(916)], { source });
      got.blocks.forEach((b, k) => expect(Buffer.compare(b.data, put[k]!.data)).toBe(0));
    }
    // Nothing held: the connection that asked is let go, and the next get is served all the same.
    expect((await pullBlocks([hashOf(9092)], { source })).res.blocks).toBe(0);
    expect((await pullBlocks([hashOf(916)], { source })).blocks.map((b) => b.hash)).toEqual([hashOf(916)]);
    expect(transferCalls).toBe(calls);
    await waitFor('the leases to end', () => svc.store.stats().activeLeases === 0);
    // A pull token that is not 8 bytes is refused.
    await expect(
      client.get({
        model_id: MODEL,
        hashes: [hashOf(915)],
        lease_ms: 0,
        sink: { grpc_address: sinkAddress, transfer_id: 'x', transport: 'tcp', pull: true, pull_token: new Uint8Array(3) },
      }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await waitFor('the lease to end', () => svc.store.stats().activeLeases === 0);
  });

  it('a pulled get only from the sink’s own host, over tcp only; nothing found: no offer', async () => {
    await client.put(sender, MODEL, blocks([920]));
    // A worker registered on another host: this process may not pull its blocks by naming it.
    await cp.registry.register({
      id: 'far-worker',
      role: 'decode',
      grpcAddress: '127.0.0.2:1',
      adminAddress: '',
      model: MODEL,
      capacity: { totalBlocks: 0, blockSize: 0, maxNumSeqs: 0 },
      dataAddress: '127.0.0.2:2',
      incarnation: 'test',
      startedAt: Date.now(),
    });
    await expect(pullBlocks([hashOf(920)], { sink: '127.0.0.2:1' })).rejects.toMatchObject({
      code: 'PERMISSION_DENIED',
      message: expect.stringContaining('must come from its host'),
    });
    await expect(
      client.get({
        model_id: MODEL,
        hashes: [hashOf(920)],
        lease_ms: 0,
        sink: { grpc_address: sinkAddress, transfer_id: 'x', transport: 'shm', pull: true },
      }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('goes over tcp') });
    const none = await pullBlocks([hashOf(9091)]);
    expect(none.res).toMatchObject({ tiers: [''], blocks: 0, tcp_source: '' });
    expect(svc.store.stats().activeLeases).toBe(0);
  });

  it('a pulled get from a store that dies before the pull: the pull fails, nothing is admitted', async () => {
    const doomed = await startKvStoreService({
      nodeId: 'store-doomed',
      controlPlane: cp,
      logger: silentLogger,
      memoryBytes: MEMORY,
      models: [{ id: MODEL, layout: LAYOUT }],
    });
    const c = new KvStoreClient(doomed.grpcAddress);
    try {
      await c.put(sender, MODEL, blocks([930]));
      const reply = await c.get({
        model_id: MODEL,
        hashes: [hashOf(930)],
        lease_ms: 0,
        sink: { grpc_address: sinkAddress, transfer_id: 'doomed', transport: 'tcp', pull: true },
      });
      await doomed.close();
      let admitted = false;
      arrived.set('doomed', () => (admitted = true));
      const err = await sink
        .pull({ transferId: 'doomed', source: reply.tcp_source, token: reply.tcp_token, blocks: [{ hash: hashOf(930), length: BLOCK }] })
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ code: expect.stringMatching(/^(UNAVAILABLE|CONNECTION_LOST)$/) });
      expect(admitted).toBe(false);
      expect(sink.pendingTransfers).toBe(0);
    } finally {
      c.close();
      await doomed.close();
    }
  });

  it('registers as a kv-store and answers health', async () => {
    const rec = (await cp.registry.list()).find((r) => r.id === 'store-0');
    expect(rec?.role).toBe('kv-store');
    expect((await client.health()).status).toBe('serving');
  });

  it.each(['tcp', 'shm', 'grpc'] as const)('puts and gets blocks byte-exact over %s', async (transport) => {
    const base = { tcp: 100, shm: 200, grpc: 300 }[transport];
    const put = blocks([base, base + 1, base + 2]);
    const receipt = await client.put(sender, MODEL, put, { transport });
    expect(receipt.stored).toHaveLength(3);
    expect(receipt.transport).toBe(transport);
    // Again: the store keeps its copies (nothing stored twice); beginPut says what it already holds.
    const held = svc.store.stats().memory;
    const again = await client.put(sender, MODEL, put, { transport });
    expect(again.stored).toHaveLength(3);
    expect(svc.store.stats().memory).toMatchObject({ blocks: held.blocks, bytes: held.bytes });
    const begun = await client.beginPut(
      MODEL,
      put.map((b) => ({ hash: b.hash, size: b.data.byteLength })),
    );
    expect(begun.already_stored).toEqual(put.map((b) => b.hash));
    await client.revokePut(begun.put_id);
    const { res, blocks: got } = await fetchBlocks([...put.map((b) => b.hash), hashOf(9999)], transport);
    expect(res.tiers).toEqual(['memory', 'memory', 'memory', '']);
    expect(got.map((b) => b.hash)).toEqual(put.map((b) => b.hash));
    got.forEach((b, i) => expect(Buffer.compare(b.data, put[i]!.data)).toBe(0));
    expect((await client.exists(MODEL, [put[0]!.hash, hashOf(9998)])).tiers).toEqual(['memory', '']);
    expect((await client.longestPrefix(MODEL, [...put.map((b) => b.hash), hashOf(9997), put[0]!.hash])).tiers).toHaveLength(3);
  });

  it('records holders in the directory and publishes stored events with tier store; Snapshot matches', async () => {
    await client.put(sender, MODEL, blocks([400]));
    await sleep(120);
    expect(await directory.locate(MODEL, [hashOf(400)])).toEqual([[{ node: 'store-0', tier: 'memory' }]]);
    const stored = batches
      .filter((b) => b.worker === 'store-0')
      .flatMap((b) => b.events)
      .filter((e) => e.kind === 'stored');
    expect(stored.every((e) => e.kind === 'stored' && e.tier === 'store')).toBe(true);
    expect(stored.flatMap((e) => (e.kind === 'stored' ? e.hashes : []))).toContain(hashOf(400));
    const snap = await client.snapshot();
    expect(snap.node).toBe('store-0');
    expect(snap.groups.flatMap((g) => g.hashes)).toContain(hashOf(400));
  });

  it('unknown hashes are reported missing and nothing is sent', async () => {
    const { res } = await fetchBlocks([hashOf(7001), hashOf(7002)]);
    expect(res).toMatchObject({ tiers: ['', ''], blocks: 0 });
  });

  it.each(['tcp', 'grpc'] as const)(
    'a block corrupted in memory fails the get at the reader (%s), is dropped, and the next get reports it missing',
    async (transport) => {
      const base = { tcp: 620, grpc: 630 }[transport];
      const put = blocks([base, base + 1]);
      await client.put(sender, MODEL, put, { transport });
      // The store's own buffer, as a get without the store-side check hands it out: this corrupts the stored block.
      const held = await svc.store.get(MODEL, [put[0]!.hash], { verifyMemory: false });
      held.blocks[0]!.bytes[100]! ^= 0xff;
      svc.store.releaseLease(held.leaseId!);
      const dropped = svc.store.stats().memory.corruptDropped;
      const err = await fetchBlocks(
        put.map((b) => b.hash),
        transport,
      ).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KvStoreCallError);
      expect(err).toMatchObject({ code: 'DATA_LOSS' });
      expect((err as Error).message).toMatch(/checksum .* 1 corrupt block\(s\) dropped from this store/);
      expect(svc.store.stats().memory.corruptDropped).toBe(dropped + 1);
      const again = await fetchBlocks(
        put.map((b) => b.hash),
        transport,
      );
      expect(again.res.tiers).toEqual(['', 'memory']);
      expect(again.blocks.map((b) => b.hash)).toEqual([put[1]!.hash]);
      expect(Buffer.compare(again.blocks[0]!.data, put[1]!.data)).toBe(0);
    },
  );

  it('a block corrupted in memory fails a pulled get at the reader; the get again with verify drops it and sends the rest', async () => {
    const put = blocks([640, 641]);
    await client.put(sender, MODEL, put);
    const held = await svc.store.get(MODEL, [put[0]!.hash], { verifyMemory: false });
    held.blocks[0]!.bytes[100]! ^= 0xff;
    svc.store.releaseLease(held.leaseId!);
    const dropped = svc.store.stats().memory.corruptDropped;
    const err = await pullBlocks(put.map((b) => b.hash)).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'CHECKSUM_MISMATCH' });
    await waitFor('the lease to end', () => svc.store.stats().activeLeases === 0);
    const again = await pullBlocks(
      put.map((b) => b.hash),
      { verify: true },
    );
    expect(again.res.tiers).toEqual(['', 'memory']);
    expect(again.blocks.map((b) => b.hash)).toEqual([put[1]!.hash]);
    expect(Buffer.compare(again.blocks[0]!.data, put[1]!.data)).toBe(0);
    expect(svc.store.stats().memory.corruptDropped).toBe(dropped + 1);
  });

  it('a put whose transfer ends while the put begins leaves no open put behind', async () => {
    const ac = new AbortController();
    const store = svc.store;
    const beginPut = store.beginPut.bind(store);
    // The client gives up just as the store begins the put (as eviction to make room can take a while).
    store.beginPut = async (...args) => {
      const begun = await beginPut(...args);
      ac.abort();
      await sleep(50);
      return begun;
    };
    try {
      await expect(client.put(sender, MODEL, blocks([650, 651]), { transport: 'tcp', signal: ac.signal })).rejects.toThrow();
      await sleep(100); // the store's beginPut returns 50 ms after the abort; the put ttl here is 300 ms
      expect(store.stats().puts.active).toBe(0); // revoked at once, not reclaimed at its ttl
      expect((await client.exists(MODEL, [hashOf(650), hashOf(651)])).tiers).toEqual(['', '']);
    } finally {
      store.beginPut = beginPut;
    }
  });

  it('bad input gets clear errors and stores nothing', async () => {
    const before = svc.store.stats().memory.blocks;
    const err = (p: Promise<unknown>) =>
      p.then(
        () => undefined,
        (e: unknown) => e as KvStoreCallError,
      );
    // Oversized (not this model's block size), malformed hash, unserved model.
    expect(await err(client.beginPut(MODEL, [{ hash: hashOf(1), size: BLOCK * 2 }]))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('a block of this model is'),
    });
    expect(await err(client.beginPut(MODEL, [{ hash: 'XYZ', size: BLOCK }]))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('16 lowercase hex'),
    });
    expect(await err(client.beginPut('other/model', [{ hash: hashOf(1), size: BLOCK }]))).toMatchObject({
      code: 'NOT_FOUND',
      message: expect.stringContaining('not served'),
    });
    expect(await err(client.exists('other/model', [hashOf(1)]))).toMatchObject({ code: 'NOT_FOUND' });
    // Packed hashes that are not 8 bytes per block size, straight over gRPC.
    const Raw = makeGenericClientConstructor(kvStoreService(), 'KvStore');
    const rawClient = new Raw(svc.grpcAddress, credentials.createInsecure()) as unknown as {
      BeginPut: (r: object, cb: (e: { code: number; details: string } | null) => void) => void;
      close(): void;
    };
    const rawErr = await new Promise<{ code: number; details: string } | null>((resolve) =>
      rawClient.BeginPut({ model_id: MODEL, hashes: Buffer.alloc(12), sizes: [BLOCK], ttl_ms: 0 }, resolve),
    );
    rawClient.close();
    expect(rawErr).toMatchObject({ code: 3, details: expect.stringContaining('12 bytes of hashes for 1 block sizes') });
    // More than the memory tier holds: the store's code comes back through the transfer's refusal.
    const tooMany = blocks(Array.from({ length: 41 }, (_, i) => 2000 + i));
    expect(await err(client.put(sender, MODEL, tooMany))).toMatchObject({
      code: 'RESOURCE_EXHAUSTED',
      message: expect.stringContaining('memory tier holds only'),
    });
    // Garbage bytes of the right length, among good blocks (each block is checked as it arrives): the
    // transfer is refused, the put revoked, and none of its blocks stored, not even those before it.
    const garbage = { hash: hashOf(500), data: new Uint8Array(BLOCK).fill(7) };
    expect(
      await err(client.put(sender, MODEL, [...blocks([510, 511]), { ...garbage, checksum: crc32(garbage.data) }, ...blocks([512])])),
    ).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('not a KV block') });
    // Without its true checksum (the client derives one from the block header), the transfer itself refuses it.
    expect(await err(client.put(sender, MODEL, [...blocks([510]), garbage]))).toMatchObject({ code: 'CHECKSUM_MISMATCH' });
    // A block whose header names another hash.
    const wrong = { hash: hashOf(501), data: makeBlock(hashOf(502), 1) };
    expect(await err(client.put(sender, MODEL, [wrong]))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining(`names hash ${hashOf(502)}`),
    });
    // Bytes pushed with no open put.
    await expect(
      sender.send({ peer: { grpcAddress: svc.grpcAddress }, blocks: blocks([503]), meta: { put_id: 'nope' } }),
    ).rejects.toThrow();
    await expect(sender.send({ peer: { grpcAddress: svc.grpcAddress }, blocks: blocks([504]) })).rejects.toThrow();
    expect(await err(client.commitPut('nope'))).toMatchObject({ code: 'NOT_FOUND' });
    expect((await client.exists(MODEL, [500, 501, 502, 503, 504, 510, 511, 512].map(hashOf))).tiers).toEqual(Array(8).fill(''));
    expect(svc.store.stats().memory.blocks).toBe(before);
    expect(svc.store.stats().puts.active).toBe(0);
    expect((await client.stats()).refused_transfers).toBeGreaterThanOrEqual(3);
  });

  it('an abandoned put is reclaimed after its ttl and never becomes readable', async () => {
    const begun = await client.beginPut(MODEL, [{ hash: hashOf(600), size: BLOCK }], 200);
    await sender.send({ peer: { grpcAddress: svc.grpcAddress }, blocks: blocks([600]), meta: { put_id: begun.put_id } });
    await sleep(400);
    await expect(client.commitPut(begun.put_id)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect((await client.exists(MODEL, [hashOf(600)])).tiers).toEqual(['']);
    expect(svc.store.stats().memory.reservedBytes).toBe(0);
  });

  it('a flood of concurrent puts never exceeds the memory budget', async () => {
    let peak = 0;
    const timer = setInterval(() => (peak = Math.max(peak, svc.store.stats().memory.usedBytes)), 1);
    const results = await Promise.allSettled(
      Array.from({ length: 30 }, (_, i) =>
        client.put(sender, MODEL, blocks([1000 + i * 4, 1001 + i * 4, 1002 + i * 4, 1003 + i * 4]), { transport: 'tcp' }),
      ),
    );
    clearInterval(timer);
    expect(results.filter((r) => r.status === 'fulfilled').length).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(MEMORY);
    expect(svc.store.stats().memory.usedBytes).toBeLessThanOrEqual(MEMORY);
    expect(svc.store.stats().puts.active).toBe(0);
  });

  it('a block being read stays leased: Remove keeps it until the lease ends', async () => {
    await client.put(sender, MODEL, blocks([800]));
    const lease = await svc.store.get(MODEL, [hashOf(800)], { leaseMs: 5_000 });
    expect((await client.remove(MODEL, [hashOf(800)])).leased).toEqual([hashOf(800)]);
    svc.store.releaseLease(lease.leaseId!);
    expect((await client.remove(MODEL, [hashOf(800)])).removed).toEqual([hashOf(800)]);
  });
});
