// What a Begin may cost a receiver before its bytes arrive: nothing but a reservation. Memory is taken
// segment by segment as the bytes come, one peer cannot reserve the whole budget, and a tcp transfer is
// pulled only from a data port the receiver's owner recognises.
import { createServer, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SEGMENT_BYTES } from './assembly';
import { TOKEN_BYTES } from './frame-codec';
import { TransferSender } from './sender';
import { fakeSource, makeBlocks, rawTransferCall, startHarness, waitFor, type Harness } from './testkit';
import { PROTOCOL_VERSION, type TransportKind } from './types';
import { packHashes, type Begin } from './wire';

const MiB = 1024 * 1024;
let h: Harness;
let tx: TransferSender;
/** Data ports the receiver's owner recognises (allowSource). */
const allowed = new Set<string>();

beforeAll(async () => {
  h = await startHarness({
    limits: { maxPendingBytes: 4096 * MiB, maxPendingBytesPerPeer: 1100 * MiB, maxTransferMs: 5_000 },
    allowSource: (address) => allowed.has(address),
  });
  tx = new TransferSender({ shmBase: h.shmBase });
  allowed.add(await tx.listen());
});

afterAll(async () => {
  tx.close();
  await h.close();
});

/** A tcp Begin announcing `count` blocks of `size` bytes, without having them. */
function announce(id: string, count: number, size: number, source: string): Begin {
  return {
    protocol_version: PROTOCOL_VERSION,
    transfer_id: id,
    transport: 'tcp',
    meta: {},
    block_hashes: packHashes(Array.from({ length: count }, (_, i) => i.toString(16).padStart(16, '0'))),
    block_lengths: Array.from({ length: count }, () => size),
    total_bytes: count * size,
    tcp_source: source,
    tcp_token: new Uint8Array(TOKEN_BYTES).fill(7),
  };
}

describe('receive memory follows the bytes', () => {
  it('a Begin announcing 1 GiB takes no receive memory while no byte arrives', async () => {
    const silent = await fakeSource(() => undefined);
    allowed.add(silent.address);
    const r = rawTransferCall(h.address);
    try {
      const before = process.memoryUsage().arrayBuffers;
      r.call.write({ kind: 'begin', begin: announce('gigabyte', 512, 2 * MiB, silent.address) });
      await waitFor(() => r.received.some((m) => m.kind === 'ready'), 5_000, 'ready');
      expect(h.rx.pendingBytes).toBe(1024 * MiB); // reserved
      expect(h.rx.allocatedBytes).toBe(0); // not taken
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * MiB);
    } finally {
      r.call.cancel();
      r.close();
      silent.close();
      allowed.delete(silent.address);
    }
    await waitFor(() => h.rx.pendingTransfers === 0, 5_000, 'discard');
  });

  it.each<TransportKind>(['tcp', 'grpc', 'shm'])('a transfer over several segments arrives byte for byte over %s', async (transport) => {
    const blocks = makeBlocks(Math.ceil((2.5 * SEGMENT_BYTES) / MiB), MiB, 3);
    const receipt = await tx.send({ peer: { grpcAddress: h.address }, blocks, transport });
    const got = h.admitted.find((t) => t.transferId === receipt.transferId);
    expect(got?.blocks.length).toBe(blocks.length);
    got?.blocks.forEach((b, i) => expect(Buffer.compare(b.data, blocks[i]!.data), `block ${i}`).toBe(0));
    h.admitted.length = 0;
  });

  it('one peer cannot reserve more than its share: RESOURCE_EXHAUSTED naming it', async () => {
    const silent = await fakeSource(() => undefined);
    allowed.add(silent.address);
    const r = rawTransferCall(h.address);
    try {
      r.call.write({ kind: 'begin', begin: announce('hog', 512, 2 * MiB, silent.address) });
      await waitFor(() => r.received.some((m) => m.kind === 'ready'), 5_000, 'ready');
      await expect(tx.send({ peer: { grpcAddress: h.address }, blocks: makeBlocks(100, MiB, 4), transport: 'tcp' })).rejects.toMatchObject({
        code: 'RESOURCE_EXHAUSTED',
        message: expect.stringContaining('from 127.0.0.1'),
      });
    } finally {
      r.call.cancel();
      r.close();
      silent.close();
      allowed.delete(silent.address);
    }
    await waitFor(() => h.rx.pendingTransfers === 0, 5_000, 'discard');
  });
});

describe('a tcp transfer is pulled only from a recognised data port', () => {
  it('a Begin naming any other address is refused, and that address is never dialed', async () => {
    const dialed: Socket[] = [];
    const bystander = createServer((s) => dialed.push(s));
    await new Promise<void>((resolve) => bystander.listen(0, '127.0.0.1', resolve));
    const address = `127.0.0.1:${(bystander.address() as { port: number }).port}`;
    const r = rawTransferCall(h.address);
    try {
      r.call.write({ kind: 'begin', begin: announce('ssrf', 1, 1024, address) });
      const err = await r.ended;
      expect(err?.details).toContain(`data port ${address} is not a registered peer's`);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(dialed).toEqual([]);
    } finally {
      r.close();
      for (const s of dialed) s.destroy();
      bystander.close();
    }
  });
});
