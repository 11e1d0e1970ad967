import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blockChecksum } from './checksum';
import { TransferSender } from './sender';
import { makeBlocks, startHarness, waitFor, type Harness } from './testkit';
import type { KvBlock, TransportKind } from './types';

let h: Harness;
let tx: TransferSender;

beforeAll(async () => {
  h = await startHarness();
  tx = new TransferSender({ shmBase: h.shmBase });
});

afterAll(async () => {
  tx.close();
  await h.close();
});

function expectSame(got: readonly KvBlock[], sent: readonly KvBlock[]): void {
  expect(got.length).toBe(sent.length);
  got.forEach((b, i) => {
    expect(b.hash).toBe(sent[i]?.hash);
    expect(Buffer.from(b.data).equals(Buffer.from((sent[i] as KvBlock).data))).toBe(true);
  });
}

describe('round trip', () => {
  it.each<TransportKind>(['tcp', 'shm', 'grpc'])('over %s: bytes identical, order kept, meta passed', async (transport) => {
    // 32 KiB blocks like the tiny model's, an odd-sized one, and one larger than a gRPC chunk.
    const blocks = [...makeBlocks(40, 32 * 1024, 1), ...makeBlocks(1, 1001, 2), ...makeBlocks(1, 1536 * 1024 + 3, 3)].map((b, i) =>
      i % 2 === 0 ? { ...b, checksum: blockChecksum(b.data) } : b,
    ); // some known to the sender
    const before = h.admitted.length;
    const receipt = await tx.send({
      peer: { grpcAddress: h.address, advertisement: h.rx.advertisement() },
      transport,
      blocks,
      meta: { request_id: `req-${transport}`, first_token: '42' },
    });
    expect(receipt.transport).toBe(transport);
    expect(receipt.blocks).toBe(blocks.length);
    expect(receipt.bytes).toBe(blocks.reduce((n, b) => n + b.data.byteLength, 0));
    expect(h.admitted.length).toBe(before + 1);
    const t = h.admitted[before];
    expect(t?.transferId).toBe(receipt.transferId);
    expect(t?.transport).toBe(transport);
    expect(t?.meta).toEqual({ request_id: `req-${transport}`, first_token: '42' });
    expectSame(t?.blocks ?? [], blocks);
    // Handed over with their verified checksums, whether the sender passed them or not.
    expect(t?.blocks.map((b) => b.checksum)).toEqual(blocks.map((b) => blockChecksum(b.data)));
    expect(h.rx.pendingTransfers).toBe(0);
    expect(h.rx.pendingBytes).toBe(0);
  });

  it("auto takes the receiver's first usable transport (tcp by default), fetching its advertisement over gRPC", async () => {
    expect(h.rx.advertisement().transports).toEqual(['tcp', 'shm', 'grpc']);
    const receipt = await tx.send({ peer: { grpcAddress: h.address }, blocks: makeBlocks(3, 4096, 4) });
    expect(receipt.transport).toBe('tcp');
    // A receiver preferring shm gets it on one host.
    const shmFirst = { ...h.rx.advertisement(), transports: ['shm' as const, 'tcp' as const, 'grpc' as const] };
    expect((await tx.send({ peer: { grpcAddress: h.address, advertisement: shmFirst }, blocks: makeBlocks(3, 4096, 6) })).transport).toBe(
      'shm',
    );
  });

  it('auto falls back to tcp across hosts and to grpc without a data plane', async () => {
    const ad = h.rx.advertisement();
    const otherHost = { ...ad, shmHostId: 'another-host' };
    const blocks = makeBlocks(2, 4096, 5);
    expect((await tx.send({ peer: { grpcAddress: h.address, advertisement: otherHost }, blocks })).transport).toBe('tcp');
    const grpcOnly = { ...ad, transports: ['grpc' as const] };
    expect((await tx.send({ peer: { grpcAddress: h.address, advertisement: grpcOnly }, blocks })).transport).toBe('grpc');
    await expect(tx.send({ peer: { grpcAddress: h.address, advertisement: otherHost }, blocks, transport: 'shm' })).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
  });

  it('reuses pooled tcp connections across transfers', async () => {
    for (let i = 0; i < 5; i++) {
      const blocks = makeBlocks(4, 8192, 10 + i);
      const before = h.admitted.length;
      await tx.send({ peer: { grpcAddress: h.address, advertisement: h.rx.advertisement() }, transport: 'tcp', blocks });
      expectSame(h.admitted[before]?.blocks ?? [], blocks);
    }
  });

  it('delivers concurrent transfers to one receiver, each whole', async () => {
    const peer = { grpcAddress: h.address, advertisement: h.rx.advertisement() };
    const transports: TransportKind[] = ['tcp', 'shm', 'grpc', 'tcp', 'shm', 'grpc', 'tcp', 'tcp'];
    const sends = transports.map((transport, i) => {
      const blocks = makeBlocks(20 + i, 16 * 1024 + i * 8, 100 + i);
      return tx.send({ peer, transport, blocks, meta: { i: String(i) } }).then((r) => ({ r, blocks }));
    });
    const done = await Promise.all(sends);
    for (const { r, blocks } of done) {
      const t = h.admitted.find((a) => a.transferId === r.transferId);
      expectSame(t?.blocks ?? [], blocks);
    }
    expect(h.rx.pendingTransfers).toBe(0);
  });

  it('leaves no shm segment behind', () => {
    expect(readdirSync(join(h.shmBase, 'pdserve-kv')).filter((n) => n.endsWith('.seg'))).toEqual([]);
    expect(h.discarded).toEqual([]);
  });
});

describe('receive slabs', () => {
  it('are reused after admission unless the application retains them', async () => {
    const seen: { buffer: ArrayBufferLike; copy: Buffer; first: Uint8Array }[] = [];
    const rx = await startHarness({
      onTransfer: (t) => {
        const first = (t.blocks[0] as KvBlock).data;
        seen.push({ buffer: first.buffer, copy: Buffer.from(first), first });
        if (seen.length === 2) t.retain();
      },
    });
    const sender = new TransferSender({ shmBase: rx.shmBase });
    try {
      const peer = { grpcAddress: rx.address, advertisement: rx.rx.advertisement() };
      for (let i = 0; i < 3; i++) await sender.send({ peer, transport: 'tcp', blocks: makeBlocks(8, 4096, 200 + i) });
      const [a, b, c] = seen;
      expect(b?.buffer).toBe(a?.buffer); // the first slab was recycled into the second transfer
      expect(c?.buffer).not.toBe(b?.buffer); // the second was retained, so the third got another
      expect(Buffer.from(b?.first ?? []).equals(b?.copy ?? Buffer.alloc(0))).toBe(true); // and it is intact
    } finally {
      sender.close();
      await rx.close();
    }
  });
});

describe('placement', () => {
  it.each<TransportKind>(['tcp', 'shm', 'grpc'])(
    'over %s, blocks land in the buffers the application named, verified',
    async (transport) => {
      const placed = new Map<string, Uint8Array[]>();
      const rx = await startHarness({
        place: (offer) => {
          if (offer.meta['place'] !== 'yes') return undefined;
          const bufs = offer.blocks.map((b) => new Uint8Array(b.length));
          placed.set(offer.transferId, bufs);
          return bufs;
        },
      });
      const sender = new TransferSender({ shmBase: rx.shmBase });
      try {
        const peer = { grpcAddress: rx.address, advertisement: rx.rx.advertisement() };
        const blocks = [...makeBlocks(70, 32 * 1024, 300), ...makeBlocks(1, 777, 301)]; // more than one tcp batch
        const r = await sender.send({ peer, transport, blocks, meta: { place: 'yes' } });
        const t = rx.admitted.find((a) => a.transferId === r.transferId);
        expectSame(t?.blocks ?? [], blocks);
        const bufs = placed.get(r.transferId) ?? [];
        expect(bufs).toHaveLength(blocks.length);
        t?.blocks.forEach((b, i) => expect(b.data).toBe(bufs[i])); // the very buffers: no copy
        expect(t?.blocks.map((b) => b.checksum)).toEqual(blocks.map((b) => blockChecksum(b.data)));
        // Unplaced transfers still land in a slab.
        const r2 = await sender.send({ peer, transport, blocks: makeBlocks(3, 4096, 302) });
        expect(placed.has(r2.transferId)).toBe(false);
        expect(rx.admitted.find((a) => a.transferId === r2.transferId)?.blocks).toHaveLength(3);
      } finally {
        sender.close();
        await rx.close();
      }
    },
  );

  it.each<TransportKind>(['tcp', 'shm', 'grpc'])(
    'over %s, a placement decided later holds the transfer until then, losing nothing; a rejected one refuses it',
    async (transport) => {
      const rx = await startHarness({
        place: async (offer) => {
          await new Promise((r) => setTimeout(r, 50)); // what the sender streams meanwhile (grpc chunks) must wait
          if (offer.meta['refuse'] === 'yes') throw new Error('no such put');
          return offer.blocks.map((b) => new Uint8Array(b.length));
        },
      });
      const sender = new TransferSender({ shmBase: rx.shmBase });
      try {
        const peer = { grpcAddress: rx.address, advertisement: rx.rx.advertisement() };
        const blocks = makeBlocks(70, 32 * 1024, 320);
        const r = await sender.send({ peer, transport, blocks });
        expectSame(rx.admitted.find((a) => a.transferId === r.transferId)?.blocks ?? [], blocks);
        await expect(sender.send({ peer, transport, blocks: makeBlocks(3, 4096, 321), meta: { refuse: 'yes' } })).rejects.toMatchObject({
          code: 'REFUSED',
          message: expect.stringContaining('no such put'),
        });
        expect(rx.admitted).toHaveLength(1);
        await waitFor(() => rx.rx.pendingBytes === 0);
      } finally {
        sender.close();
        await rx.close();
      }
    },
  );

  it('over tcp, blocks placed side by side in one buffer are read together, and land right', async () => {
    let arena: ArrayBuffer | undefined;
    const rx = await startHarness({
      place: (offer) => {
        const total = offer.blocks.reduce((n, b) => n + b.length, 0);
        arena = new ArrayBuffer(total + 200);
        let at = 100; // not at the start, and one gap after block 20: two runs of neighbours
        return offer.blocks.map((b, i) => {
          const v = new Uint8Array(arena as ArrayBuffer, at, b.length);
          at += b.length + (i === 20 ? 50 : 0);
          return v;
        });
      },
    });
    const sender = new TransferSender({ shmBase: rx.shmBase });
    try {
      const peer = { grpcAddress: rx.address, advertisement: rx.rx.advertisement() };
      const blocks = [...makeBlocks(40, 32 * 1024, 330), ...makeBlocks(3, 999, 331)];
      const r = await sender.send({ peer, transport: 'tcp', blocks });
      const t = rx.admitted.find((a) => a.transferId === r.transferId);
      expectSame(t?.blocks ?? [], blocks);
      expect(t?.blocks.every((b) => b.data.buffer === arena)).toBe(true);
    } finally {
      sender.close();
      await rx.close();
    }
  });

  it('a placement that does not fit the blocks, or overlaps itself, refuses the transfer', async () => {
    const shared = new ArrayBuffer(8192);
    const rx = await startHarness({
      place: (offer) =>
        offer.meta['overlap'] === 'yes'
          ? offer.blocks.map((b, i) => new Uint8Array(shared, i * 100, b.length)) // the second starts inside the first
          : offer.blocks.map((b) => new Uint8Array(b.length + 1)),
    });
    const sender = new TransferSender({ shmBase: rx.shmBase });
    try {
      const peer = { grpcAddress: rx.address, advertisement: rx.rx.advertisement() };
      await expect(
        sender.send({ peer, transport: 'tcp', blocks: makeBlocks(2, 1024, 311), meta: { overlap: 'yes' } }),
      ).rejects.toMatchObject({ code: 'REFUSED' });
      await expect(sender.send({ peer, transport: 'tcp', blocks: makeBlocks(2, 4096, 310) })).rejects.toMatchObject({ code: 'REFUSED' });
      expect(rx.admitted).toEqual([]);
      expect(rx.rx.pendingBytes).toBe(0);
    } finally {
      sender.close();
      await rx.close();
    }
  });
});

describe('blocks as they arrive', () => {
  it.each(['tcp', 'grpc', 'shm'] as const)(
    'over %s, the application is told of each block once, verified, before the transfer is admitted; a throw refuses it',
    async (transport) => {
      const seen: { transferId: string; index: number; hash: string; checksum: number; admitted: number }[] = [];
      const rx = await startHarness({
        onBlock: (transferId, index, block) => {
          if (block.hash === 'f'.repeat(16)) throw new Error('block f… is not welcome');
          expect(block.checksum).toBe(blockChecksum(block.data));
          seen.push({ transferId, index, hash: block.hash, checksum: block.checksum as number, admitted: rx.admitted.length });
        },
      });
      const sender = new TransferSender({ shmBase: rx.shmBase });
      try {
        const peer = { grpcAddress: rx.address, advertisement: rx.rx.advertisement() };
        const blocks = makeBlocks(70, 32 * 1024, 340); // more than one tcp batch
        const r = await sender.send({ peer, transport, blocks });
        expect(r.transport).toBe(transport);
        expect(seen.map((s) => s.index)).toEqual(blocks.map((_, i) => i));
        expect(seen.every((s, i) => s.transferId === r.transferId && s.hash === blocks[i]!.hash && s.admitted === 0)).toBe(true);
        expect(rx.admitted).toHaveLength(1);
        // Refused half-way: the sender hears why, nothing is admitted, the transfer is discarded.
        const bad = [
          ...makeBlocks(40, 32 * 1024, 341),
          { hash: 'f'.repeat(16), data: new Uint8Array(32 * 1024).fill(5) },
          ...makeBlocks(5, 32 * 1024, 342),
        ];
        await expect(sender.send({ peer, transport, blocks: bad })).rejects.toMatchObject({
          code: 'REFUSED',
          message: expect.stringContaining('is not welcome'),
        });
        expect(rx.admitted).toHaveLength(1);
        await waitFor(() => rx.discarded.length === 1 && rx.rx.pendingBytes === 0);
        expect(rx.discarded[0]?.error.code).toBe('REFUSED');
      } finally {
        sender.close();
        await rx.close();
      }
    },
  );
});
