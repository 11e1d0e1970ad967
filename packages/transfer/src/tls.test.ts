// mTLS on the transfer engine: the KvTransfer channel and the tcp data port both refuse a peer without a
// certificate from the cluster's CA, and a transfer between two certified peers arrives byte for byte.
import { rmSync } from 'node:fs';
import { connect } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { makeThrowawayCa, readTlsDir, tlsClientOptions, type TlsMaterial } from '@pdserve/rpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TransferSender } from './sender';
import { TcpSource } from './tcp-source';
import { makeBlocks, startHarness, type Harness } from './testkit';

let dirs: string[] = [];
let ours: TlsMaterial;
let foreign: TlsMaterial;
let h: Harness;

beforeAll(async () => {
  dirs = [makeThrowawayCa('cluster'), makeThrowawayCa('attacker')];
  ours = readTlsDir(dirs[0]!);
  foreign = readTlsDir(dirs[1]!);
  h = await startHarness({ tls: ours, transports: ['tcp', 'grpc'] });
});

afterAll(async () => {
  await h.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('mTLS transfers', () => {
  it.each(['tcp', 'grpc'] as const)('over %s between two peers of one CA: bytes identical', async (transport) => {
    const tx = new TransferSender({ tls: ours });
    try {
      const blocks = makeBlocks(8, 32 * 1024, 7);
      const receipt = await tx.send({ peer: { grpcAddress: h.address }, blocks, transport });
      expect(receipt.transport).toBe(transport);
      const got = h.admitted.find((t) => t.transferId === receipt.transferId);
      expect(got?.blocks.map((b) => Buffer.from(b.data).toString('hex'))).toEqual(blocks.map((b) => Buffer.from(b.data).toString('hex')));
    } finally {
      tx.close();
    }
  });

  it('over tcp, many batches written one block at a time behind the one in flight: bytes identical', async () => {
    const tx = new TransferSender({ tls: ours });
    try {
      const blocks = makeBlocks(48, 256 * 1024, 8); // 12 MiB: six 2 MiB batches, the socket pushing back
      const receipt = await tx.send({ peer: { grpcAddress: h.address }, blocks, transport: 'tcp' });
      const got = h.admitted.find((t) => t.transferId === receipt.transferId);
      expect(got?.blocks.length).toBe(blocks.length);
      got?.blocks.forEach((b, i) =>
        expect(Buffer.from(b.data).equals(Buffer.from((blocks[i] as (typeof blocks)[number]).data))).toBe(true),
      );
    } finally {
      tx.close();
    }
  });

  it('an offer pulled with no Transfer call (TransferReceiver.pull) over mTLS: bytes identical; a plaintext sender’s port is refused', async () => {
    const tx = new TransferSender({ tls: ours });
    const plain = new TransferSender();
    try {
      const blocks = makeBlocks(6, 64 * 1024, 9);
      const offer = await tx.offer({ blocks, peerHost: '127.0.0.1' });
      const described = blocks.map((b) => ({ hash: b.hash, length: b.data.byteLength }));
      await h.rx.pull({ transferId: 'pulled-tls', source: offer.source, token: offer.token, blocks: described });
      await offer.done;
      const got = h.admitted.find((t) => t.transferId === 'pulled-tls');
      got?.blocks.forEach((b, i) => expect(Buffer.from(b.data).equals(Buffer.from(blocks[i]!.data))).toBe(true));
      expect(got?.blocks.length).toBe(6);
      // The receiver dials data ports with its certificate and checks theirs: a plaintext port does not answer it.
      const unsafe = await plain.offer({ blocks, deadlineMs: 1_000 });
      unsafe.done.catch(() => undefined);
      await expect(
        h.rx.pull({ transferId: 'pulled-plain', source: unsafe.source, token: unsafe.token, blocks: described, deadlineMs: 1_000 }),
      ).rejects.toBeDefined();
      expect(h.admitted.some((t) => t.transferId === 'pulled-plain')).toBe(false);
      // Pipelined and listed over mTLS (the list read, the connection paused, then the batches): the same.
      for (let i = 0; i < 2; i++) {
        const prepared = await h.rx.prepare(offer.source, undefined, { listed: true });
        const again = await tx.offer({ blocks, peerHost: '127.0.0.1', token: prepared.token });
        const list = await prepared.list!;
        expect(list).toEqual(described);
        await h.rx.pull({ transferId: `listed-tls-${i}`, source: again.source, token: prepared.token, blocks: list, prepared });
        await again.done;
        const listed = h.admitted.find((t) => t.transferId === `listed-tls-${i}`);
        listed?.blocks.forEach((b, k) => expect(Buffer.from(b.data).equals(Buffer.from(blocks[k]!.data))).toBe(true));
        expect(listed?.blocks.length).toBe(6);
      }
    } finally {
      tx.close();
      plain.close();
    }
  });

  it('a plaintext sender and a sender certified by another CA are refused on the gRPC channel', async () => {
    for (const tls of [undefined, foreign]) {
      const tx = new TransferSender({ tls });
      try {
        await expect(
          tx.send({ peer: { grpcAddress: h.address }, blocks: makeBlocks(1, 1024, 1), deadlineMs: 3_000 }),
        ).rejects.toMatchObject({ code: 'UNAVAILABLE' });
      } finally {
        tx.close();
      }
    }
    expect(h.rx.pendingTransfers).toBe(0);
  });

  it('the data port refuses a plaintext client and a client of another CA before any byte is served', async () => {
    const source = await TcpSource.listen({ tls: ours });
    try {
      const { port } = new URL(`tcp://${source.address}`);
      // Plaintext: the 16-byte pull request is not a TLS ClientHello; the port closes without answering.
      const plain = await new Promise<number>((resolve) => {
        let got = 0;
        const s = connect({ host: '127.0.0.1', port: Number(port) }, () => s.write(Buffer.alloc(16, 1)));
        s.on('data', (d: Buffer) => (got += d.byteLength));
        s.on('error', () => undefined);
        s.on('close', () => resolve(got));
      });
      // A TLS ServerHello may come back, but never a batch: an application byte would be more than that.
      expect(plain).toBeLessThan(16);
      for (const tls of [foreign]) {
        const outcome = await new Promise<string>((resolve) => {
          const s = connectTls({ host: '127.0.0.1', port: Number(port), ...tlsClientOptions(tls) });
          s.on('secureConnect', () => resolve('connected'));
          s.on('error', (e) => resolve(`refused: ${e.message}`));
        });
        expect(outcome).toMatch(/^refused/);
      }
      // A client without any certificate, trusting our CA: the server asks for one and ends the handshake.
      const anonymous = await new Promise<string>((resolve) => {
        const s = connectTls({ host: '127.0.0.1', port: Number(port), ca: ours.ca, checkServerIdentity: () => undefined });
        s.on('data', () => resolve('served'));
        s.on('error', (e) => resolve(`refused: ${e.message}`));
        s.on('close', () => resolve('refused: closed'));
        s.on('secureConnect', () => s.write(Buffer.alloc(16, 1)));
      });
      expect(anonymous).toMatch(/^refused/);
    } finally {
      await source.close();
    }
  });
});
