// A tcp transfer with no Transfer call: the sender offers the blocks at its data port (TransferSender.offer),
// someone tells the receiver of the offer out of band, and the receiver pulls it (TransferReceiver.pull).
import { afterEach, describe, expect, it } from 'vitest';
import { blockChecksum } from './checksum';
import { TransferError } from './errors';
import { TransferReceiver, type TransferReceiverOptions } from './receiver';
import { TransferSender } from './sender';
import { makeBlocks } from './testkit';
import type { IncomingTransfer, KvBlock } from './types';

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

async function pair(opts: Partial<TransferReceiverOptions> = {}) {
  const admitted: IncomingTransfer[] = [];
  const copies = new Map<string, Uint8Array[]>();
  const discarded: { id: string; code: string }[] = [];
  const receiver = await TransferReceiver.start({
    onTransfer: (t) => {
      admitted.push(t);
      copies.set(
        t.transferId,
        t.blocks.map((b) => b.data.slice()),
      );
    },
    onDiscard: (id, e) => discarded.push({ id, code: e.code }),
    ...opts,
  });
  const sender = new TransferSender();
  closers.push(
    () => receiver.close(),
    () => sender.close(),
  );
  return { receiver, sender, admitted, copies, discarded };
}

const described = (blocks: readonly KvBlock[]) => blocks.map((b) => ({ hash: b.hash, length: b.data.byteLength }));

describe('a tcp transfer offered and pulled, with no Transfer call', () => {
  it('arrives byte-exact, checked, through onTransfer; the receiver’s word on the data connection settles the offer', async () => {
    const { receiver, sender, admitted, copies } = await pair();
    const blocks = makeBlocks(7, 50_000, 1);
    const offer = await sender.offer({ blocks, peerHost: '127.0.0.1' });
    expect(offer).toMatchObject({ blocks: 7, bytes: 7 * 50_000 });
    await receiver.pull({ transferId: 'pulled-1', source: offer.source, token: offer.token, blocks: described(blocks), meta: { k: 'v' } });
    await offer.done;
    expect(admitted).toHaveLength(1);
    expect(admitted[0]).toMatchObject({ transferId: 'pulled-1', transport: 'tcp', meta: { k: 'v' }, bytes: 7 * 50_000 });
    copies.get('pulled-1')!.forEach((d, i) => expect(Buffer.compare(d, blocks[i]!.data)).toBe(0));
    expect(receiver.pendingTransfers).toBe(0);
    expect(receiver.pendingBytes).toBe(0);

    // The connection is pooled: the next offer is pulled over it as well.
    const more = makeBlocks(2, 10_000, 2);
    const again = await sender.offer({ blocks: more });
    await receiver.pull({ transferId: 'pulled-2', source: again.source, token: again.token, blocks: described(more) });
    await again.done;
    expect(copies.get('pulled-2')!.map((d) => d.byteLength)).toEqual([10_000, 10_000]);
  });

  it('pipelined: the pull asked for (prepare) before the offer exists waits for it, then arrives byte-exact', async () => {
    const { receiver, sender, copies } = await pair();
    const blocks = makeBlocks(5, 40_000, 8);
    const source = await sender.listen();
    const prepared = await receiver.prepare(source);
    await new Promise((resolve) => setTimeout(resolve, 50)); // the request is at the data port, parked
    const offer = await sender.offer({ blocks, peerHost: '127.0.0.1', token: prepared.token });
    expect(offer.source).toBe(source);
    // A token cannot be offered twice at once.
    await expect(sender.offer({ blocks, token: prepared.token })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await receiver.pull({ transferId: 'pipelined', source, token: offer.token, blocks: described(blocks), prepared });
    await offer.done;
    copies.get('pipelined')!.forEach((d, i) => expect(Buffer.compare(d, blocks[i]!.data)).toBe(0));
    // The connection went back to the pool: a plain pull follows over it.
    const more = makeBlocks(1, 1000, 9);
    const next = await sender.offer({ blocks: more });
    await receiver.pull({ transferId: 'after-pipelined', source, token: next.token, blocks: described(more) });
    expect(copies.get('after-pipelined')).toHaveLength(1);
  });

  it('pipelined and listed: the sender lists the blocks on the data connection, the pull needs no other word', async () => {
    const { receiver, sender, copies } = await pair();
    const source = await sender.listen();
    for (let i = 0; i < 3; i++) {
      // New connection, then pooled ones: the list's first bytes land in the scratch a pooled connection reads into.
      const blocks = makeBlocks(1 + i, 30_000, 20 + i);
      const prepared = await receiver.prepare(source, undefined, { listed: true });
      const offer = await sender.offer({ blocks, token: prepared.token });
      const list = await prepared.list!;
      expect(list).toEqual(described(blocks));
      await receiver.pull({ transferId: `listed-${i}`, source, token: prepared.token, blocks: list, prepared });
      await offer.done;
      copies.get(`listed-${i}`)!.forEach((d, k) => expect(Buffer.compare(d, blocks[k]!.data)).toBe(0));
    }
    // Cancelled before anything was offered: the list never comes.
    const dropped = await receiver.prepare(source, undefined, { listed: true });
    receiver.cancel(dropped);
    await expect(dropped.list).rejects.toBeInstanceOf(TransferError);
  });

  it('pipelined, and nothing offered after all: cancel closes the connection that asked; a refused pull cancels it too', async () => {
    const { receiver, sender } = await pair();
    const source = await sender.listen();
    const prepared = await receiver.prepare(source);
    receiver.cancel(prepared);
    receiver.cancel(prepared); // twice: a no-op
    const blocks = makeBlocks(1, 1000, 10);
    // Offered later under that token anyway: nobody is there to pull it.
    const late = await sender.offer({ blocks, token: prepared.token, deadlineMs: 300 });
    await expect(late.done).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    // A pull the receiver refuses (its limits) lets its prepared connection go as well.
    const limited = await pair({ limits: { maxTransferBytes: 10 } });
    const p2 = await limited.receiver.prepare(source);
    const o2 = await sender.offer({ blocks, token: p2.token, deadlineMs: 300 });
    await expect(
      limited.receiver.pull({ transferId: 'too-big', source, token: o2.token, blocks: described(blocks), prepared: p2 }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(o2.done).rejects.toBeInstanceOf(TransferError);
    // A data port the receiver does not accept is never dialed.
    const strict = await pair({ allowSource: () => false });
    await expect(strict.receiver.prepare(source)).rejects.toMatchObject({ code: 'REFUSED' });
  });

  it('a block that fails its check: the pull rejects with CHECKSUM_MISMATCH, nothing is admitted, the offer fails', async () => {
    const { receiver, sender, admitted, discarded } = await pair();
    const blocks = makeBlocks(4, 30_000, 3);
    // The sender's CRC of block 2 does not match its bytes (as a block corrupted at rest would not).
    const sent = blocks.map((b, i) => ({ ...b, checksum: blockChecksum(b.data) ^ (i === 2 ? 1 : 0) }));
    const offer = await sender.offer({ blocks: sent });
    const err = await receiver
      .pull({ transferId: 'bad', source: offer.source, token: offer.token, blocks: described(blocks) })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransferError);
    expect(err).toMatchObject({ code: 'CHECKSUM_MISMATCH' });
    await expect(offer.done).rejects.toMatchObject({ code: expect.stringMatching(/^(CONNECTION_LOST|ABORTED)$/) });
    expect(admitted).toHaveLength(0);
    expect(discarded).toEqual([{ id: 'bad', code: 'CHECKSUM_MISMATCH' }]);
    expect(receiver.pendingBytes).toBe(0);
  });

  it('only a connection from the host it is for may pull the offer; unpulled, it ends at its deadline', async () => {
    const { receiver, sender, admitted } = await pair();
    const blocks = makeBlocks(2, 20_000, 4);
    const offer = await sender.offer({ blocks, peerHost: '127.0.0.2', deadlineMs: 300 });
    await expect(
      receiver.pull({ transferId: 'elsewhere', source: offer.source, token: offer.token, blocks: described(blocks) }),
    ).rejects.toMatchObject({
      code: 'CONNECTION_LOST',
    });
    await expect(offer.done).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    expect(admitted).toHaveLength(0);
  });

  it('the receiver refuses it (its limits, an unregistered source): nothing is pulled, the offers end unpulled', async () => {
    const { receiver, sender } = await pair({
      limits: { maxTransferBytes: 50_000 },
    });
    const blocks = makeBlocks(2, 40_000, 5);
    const offer = await sender.offer({ blocks, deadlineMs: 300 });
    await expect(
      receiver.pull({ transferId: 'big', source: offer.source, token: offer.token, blocks: described(blocks) }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    const refusing = await pair({ allowSource: () => false });
    const again = await refusing.sender.offer({ blocks, deadlineMs: 300 });
    await expect(
      refusing.receiver.pull({ transferId: 'unregistered', source: again.source, token: again.token, blocks: described(blocks) }),
    ).rejects.toMatchObject({ code: 'REFUSED', message: expect.stringContaining('not a registered peer') });
    // Never pulled: both offers end at their deadlines.
    await expect(offer.done).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    await expect(again.done).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
  });

  it('the sender gone between the offer and the pull: the pull fails (UNAVAILABLE), nothing is admitted', async () => {
    const { receiver, sender, admitted } = await pair();
    const blocks = makeBlocks(2, 20_000, 6);
    const offer = await sender.offer({ blocks });
    offer.done.catch(() => undefined);
    sender.close();
    await new Promise((resolve) => setTimeout(resolve, 50));
    await expect(
      receiver.pull({ transferId: 'gone', source: offer.source, token: offer.token, blocks: described(blocks) }),
    ).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
    expect(admitted).toHaveLength(0);
  });

  it('aborted by its caller mid-way: discarded, the caller’s signal decides', async () => {
    const { receiver, sender, admitted } = await pair({
      onBegin: () => new Promise((resolve) => setTimeout(resolve, 100)), // holds the pull a while
    });
    const blocks = makeBlocks(2, 20_000, 7);
    const offer = await sender.offer({ blocks, deadlineMs: 300 });
    const ac = new AbortController();
    const pulled = receiver.pull({
      transferId: 'aborted',
      source: offer.source,
      token: offer.token,
      blocks: described(blocks),
      signal: ac.signal,
    });
    ac.abort();
    await expect(pulled).rejects.toMatchObject({ code: 'ABORTED' });
    await expect(offer.done).rejects.toBeInstanceOf(TransferError);
    expect(admitted).toHaveLength(0);
    expect(receiver.pendingTransfers).toBe(0);
  });
});
