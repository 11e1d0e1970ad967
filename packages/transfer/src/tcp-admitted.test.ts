// The receiver's word that it admitted a tcp transfer, said on the data connection the blocks came over.
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockAssembly } from './assembly';
import { encodeAdmitted } from './frame-codec';
import { SlabPool } from './slab-pool';
import { TcpPullPool, splitHostPort } from './tcp-pull';
import { TcpSource } from './tcp-source';
import { makeBlocks } from './testkit';

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

/** A data port offering `blocks`, pulled whole by a receiver's connection pool. */
async function pulledOffer(blocks: ReturnType<typeof makeBlocks>) {
  const source = await TcpSource.listen();
  const pool = new TcpPullPool();
  closers.push(
    () => source.close(),
    () => pool.close(),
  );
  const offer = source.offer(blocks, new AbortController().signal);
  const target = new BlockAssembly(
    blocks.map((b) => ({ hash: b.hash, length: b.data.byteLength })),
    new SlabPool(0),
  );
  const tellAdmitted = await pool.pull(source.address, offer.token, target, new AbortController().signal);
  return { source, offer, target, tellAdmitted };
}

/** Whether `p` settles within `ms`. */
async function settles(p: Promise<unknown>, ms = 150): Promise<boolean> {
  return Promise.race([p.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms))]);
}

describe('Admitted on the data connection', () => {
  it('reaches the sender from the connection that pulled the blocks, and from no other', async () => {
    const { source, offer, target, tellAdmitted } = await pulledOffer(makeBlocks(5, 40_000, 1));
    await offer.written;
    expect(target.complete).toBe(true);
    expect(await settles(offer.admitted)).toBe(false); // nobody said so yet

    // Someone else who learned the token cannot say it.
    const { host, port } = splitHostPort(source.address);
    const stranger = connect({ host, port });
    closers.push(() => stranger.destroy());
    await new Promise((resolve) => stranger.once('connect', resolve));
    stranger.write(encodeAdmitted(offer.token));
    expect(await settles(offer.admitted)).toBe(false);

    tellAdmitted();
    expect(await settles(offer.admitted, 2_000)).toBe(true);
  });

  it('is dropped with the offer: a withdrawn transfer is never admitted', async () => {
    const { offer, tellAdmitted } = await pulledOffer(makeBlocks(2, 1000, 2));
    offer.withdraw();
    tellAdmitted();
    expect(await settles(offer.admitted)).toBe(false);
  });
});
