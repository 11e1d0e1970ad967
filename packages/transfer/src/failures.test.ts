import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '@pdserve/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { blockChecksum } from './checksum';
import { ERROR_TRAILER } from './errors';
import { TransferSender } from './sender';
import { probeShmSite } from './shm-site';
import { segmentPath, writeSegment } from './shm-transport';
import {
  batchStream,
  cuttingProxy,
  fakeSource,
  makeBlocks,
  rawTransferCall,
  startHarness,
  waitFor,
  type Harness,
  type RawCall,
} from './testkit';
import { PROTOCOL_VERSION, type IncomingTransfer, type KvBlock, type TransportKind } from './types';
import { packBlocks, type Begin } from './wire';

let h: Harness;
let tx: TransferSender;
/** What the receiving application does with a transfer; tests swap it. */
let admit: (t: IncomingTransfer) => Promise<void> | void = () => undefined;
const raws: RawCall[] = [];

beforeAll(async () => {
  h = await startHarness({
    onTransfer: (t) => {
      h.admitted.push(t);
      return admit(t);
    },
    limits: { maxTransferMs: 1_500, maxPendingBytes: 96 * 1024 * 1024 },
  });
  tx = new TransferSender({ shmBase: h.shmBase });
});

afterEach(async () => {
  admit = () => undefined;
  for (const r of raws.splice(0)) r.close();
  await waitFor(() => h.rx.pendingTransfers === 0, 5_000, 'receiver to drain');
  expect(h.admitted).toEqual([]);
  h.discarded.length = 0;
});

afterAll(async () => {
  tx.close();
  await h.close();
});

const peer = (): { grpcAddress: string; advertisement: ReturnType<Harness['rx']['advertisement']> } => ({
  grpcAddress: h.address,
  advertisement: h.rx.advertisement(),
});

const TOKEN = Uint8Array.from([9, 9, 9, 9, 1, 2, 3, 4]);

/** Begin by hand; a tcp one names `source` as the data port to pull from. */
function begin(id: string, transport: TransportKind, blocks: readonly KvBlock[], source = ''): Begin {
  return {
    protocol_version: PROTOCOL_VERSION,
    transfer_id: id,
    transport,
    meta: {},
    ...packBlocks(blocks),
    total_bytes: blocks.reduce((n, b) => n + b.data.byteLength, 0),
    tcp_source: source,
    tcp_token: source === '' ? new Uint8Array(0) : TOKEN,
  };
}

/** A data port that answers every pull with nothing, ever. */
async function silentSource(): Promise<{ address: string; close(): void }> {
  return fakeSource(() => undefined);
}

function raw(): RawCall {
  const r = rawTransferCall(h.address);
  raws.push(r);
  return r;
}

async function ready(r: RawCall): Promise<void> {
  await waitFor(() => r.received.length > 0, 5_000, 'Ready');
  if (r.received[0]?.kind !== 'ready') throw new Error('expected Ready');
}

async function expectEnded(r: RawCall, code: string): Promise<void> {
  const e = await r.ended;
  expect(e?.metadata.get(ERROR_TRAILER)[0]).toBe(code);
}

describe('a wrong checksum is rejected and nothing admitted', () => {
  it.each<TransportKind>(['tcp', 'shm', 'grpc'])('when the sender passed one that does not match, over %s', async (transport) => {
    const blocks = makeBlocks(3, 4096, 17).map((b, i) => ({ ...b, checksum: blockChecksum(b.data) ^ (i === 1 ? 8 : 0) }));
    await expect(tx.send({ peer: peer(), transport, blocks })).rejects.toMatchObject({ code: 'CHECKSUM_MISMATCH' });
    await waitFor(() => h.discarded.length === 1, 2_000, 'discard');
  });

  it('over grpc', async () => {
    const blocks = makeBlocks(3, 2048, 1);
    const r = raw();
    r.call.write({ kind: 'begin', begin: begin('bad-grpc', 'grpc', blocks) });
    r.call.write({
      kind: 'chunks',
      chunks: {
        chunks: blocks.map((b, i) => ({ block_index: i, offset: 0, data: b.data, checksum: blockChecksum(b.data) ^ (i === 2 ? 4 : 0) })),
      },
    });
    await expectEnded(r, 'CHECKSUM_MISMATCH');
    expect(h.discarded.map((d) => d.error.code)).toEqual(['CHECKSUM_MISMATCH']);
  });

  it('over tcp, and the data connection is cut', async () => {
    const blocks = makeBlocks(4, 4096, 2);
    let cut = false;
    const source = await fakeSource((token, s) => {
      s.on('close', () => {
        cut = true;
      });
      s.write(batchStream(token, blocks, 2, 1));
    });
    try {
      const r = raw();
      r.call.write({ kind: 'begin', begin: begin('bad-tcp', 'tcp', blocks, source.address) });
      await expectEnded(r, 'CHECKSUM_MISMATCH');
      await waitFor(() => cut, 2_000, 'data connection to be cut');
    } finally {
      source.close();
    }
  });

  it('over shm, and the segment is removed', async () => {
    const blocks = makeBlocks(4, 4096, 3);
    const site = await probeShmSite(h.shmBase);
    if (site === null) throw new Error('no shm site');
    const path = segmentPath(site.dir, 'bad-shm');
    const seg = await writeSegment(path, blocks, new AbortController().signal);
    const bytes = readFileSync(path);
    bytes[5000] = (bytes[5000] as number) ^ 0x40;
    writeFileSync(path, bytes);
    const r = raw();
    r.call.write({ kind: 'begin', begin: begin('bad-shm', 'shm', blocks) });
    await ready(r);
    r.call.write({ kind: 'commit', commit: { block_count: 4, shm: { path, size: seg.size, checksums: seg.checksums } } });
    await expectEnded(r, 'CHECKSUM_MISMATCH');
    expect(existsSync(path)).toBe(false);
  });
});

describe('a cut data connection', () => {
  it('fails the real sender with CONNECTION_LOST and the receiver admits nothing', async () => {
    // The receiver reaches this sender's data port only through a proxy that cuts after 1 MiB.
    const port = await freePort();
    const proxy = await cuttingProxy(() => `127.0.0.1:${port}`, 1024 * 1024);
    const cutTx = new TransferSender({ tcp: { port, advertiseAddress: proxy.address } });
    try {
      const p = cutTx.send({ peer: peer(), transport: 'tcp', blocks: makeBlocks(64, 32 * 1024, 4) });
      await expect(p).rejects.toMatchObject({ name: 'TransferError', code: 'CONNECTION_LOST' });
      await waitFor(() => h.discarded.length === 1, 2_000, 'discard');
      expect(h.discarded[0]?.error.code).toBe('CONNECTION_LOST');
    } finally {
      cutTx.close();
      proxy.close();
    }
  });

  it('half-way through the batches ends the control call with CONNECTION_LOST', async () => {
    const blocks = makeBlocks(8, 8192, 5);
    const source = await fakeSource((token, s) => {
      const all = batchStream(token, blocks, 2);
      s.write(all.subarray(0, all.byteLength / 2 + 100), () => s.destroy());
    });
    try {
      const r = raw();
      r.call.write({ kind: 'begin', begin: begin('cut-tcp', 'tcp', blocks, source.address) });
      await expectEnded(r, 'CONNECTION_LOST');
    } finally {
      source.close();
    }
  });

  it('a data port nobody listens on ends the control call with UNAVAILABLE', async () => {
    const r = raw();
    r.call.write({ kind: 'begin', begin: begin('no-source', 'tcp', makeBlocks(1, 64, 15), `127.0.0.1:${await freePort()}`) });
    await expectEnded(r, 'UNAVAILABLE');
  });
});

describe('abort', () => {
  it.each<TransportKind>(['tcp', 'shm', 'grpc'])('on the sender over %s rejects promptly; receiver admits nothing', async (transport) => {
    const ctl = new AbortController();
    const p = tx.send({ peer: peer(), transport, blocks: makeBlocks(48, 1024 * 1024, 6), signal: ctl.signal });
    await waitFor(() => h.rx.pendingTransfers > 0, 5_000, 'Begin');
    const t0 = performance.now();
    ctl.abort();
    await expect(p).rejects.toMatchObject({ code: 'ABORTED' });
    expect(performance.now() - t0).toBeLessThan(500);
    await waitFor(() => h.rx.pendingTransfers === 0, 2_000, 'receiver discard');
    expect(readdirSync(join(h.shmBase, 'pdserve-kv')).filter((n) => n.endsWith('.seg'))).toEqual([]);
  });

  it('before sending rejects at once', async () => {
    const ctl = new AbortController();
    ctl.abort();
    await expect(tx.send({ peer: peer(), blocks: makeBlocks(1, 64, 7), signal: ctl.signal })).rejects.toMatchObject({ code: 'ABORTED' });
  });
});

describe('deadline', () => {
  it('exceeded while the receiver admits: sender rejects, admission is told through its signal', async () => {
    let seen: AbortSignal | null = null;
    admit = (t) => {
      seen = t.signal;
      h.admitted.pop(); // the test's bookkeeping: this one is expected to end up discarded
      return new Promise<void>((resolve) => t.signal.addEventListener('abort', () => resolve()));
    };
    const t0 = performance.now();
    await expect(tx.send({ peer: peer(), transport: 'tcp', blocks: makeBlocks(2, 1024, 8), deadlineMs: 200 })).rejects.toMatchObject({
      code: 'DEADLINE_EXCEEDED',
    });
    expect(performance.now() - t0).toBeLessThan(1_000);
    await waitFor(() => (seen as AbortSignal | null)?.aborted === true, 2_000, 'admission signal');
  });

  it('exceeded while bytes move', async () => {
    await expect(
      tx.send({ peer: peer(), transport: 'grpc', blocks: makeBlocks(64, 1024 * 1024, 9), deadlineMs: 20 }),
    ).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
  });

  it('the receiver gives up on a silent sender after maxTransferMs', async () => {
    const source = await silentSource();
    try {
      const r = rawTransferCall(h.address, 60_000);
      raws.push(r);
      r.call.write({ kind: 'begin', begin: begin('silent', 'tcp', makeBlocks(1, 1024, 10), source.address) });
      await expectEnded(r, 'DEADLINE_EXCEEDED');
    } finally {
      source.close();
    }
  }, 10_000);
});

describe('refusals', () => {
  it('the application refusing ⇒ REFUSED', async () => {
    admit = (t) => {
      h.admitted.splice(h.admitted.indexOf(t), 1);
      throw new Error('no free blocks');
    };
    await expect(tx.send({ peer: peer(), transport: 'shm', blocks: makeBlocks(2, 1024, 11) })).rejects.toMatchObject({
      code: 'REFUSED',
      message: expect.stringContaining('no free blocks'),
    });
    expect(readdirSync(join(h.shmBase, 'pdserve-kv')).filter((n) => n.endsWith('.seg'))).toEqual([]);
  });

  it('over the in-flight byte limit ⇒ RESOURCE_EXHAUSTED', async () => {
    const source = await silentSource();
    try {
      const r = raw();
      r.call.write({ kind: 'begin', begin: begin('hog', 'tcp', makeBlocks(80, 1024 * 1024, 12), source.address) });
      await ready(r);
      await expect(tx.send({ peer: peer(), transport: 'tcp', blocks: makeBlocks(32, 1024 * 1024, 13) })).rejects.toMatchObject({
        code: 'RESOURCE_EXHAUSTED',
        retryable: true,
      });
      r.call.cancel();
    } finally {
      source.close();
    }
  });

  it('a tcp Begin without a data port to pull from ⇒ INVALID_ARGUMENT', async () => {
    const r = raw();
    r.call.write({ kind: 'begin', begin: begin('no-port', 'tcp', makeBlocks(1, 16, 16)) });
    await expectEnded(r, 'INVALID_ARGUMENT');
  });

  it('malformed requests ⇒ INVALID_ARGUMENT, locally or from the receiver', async () => {
    await expect(tx.send({ peer: peer(), blocks: [{ hash: 'nothex', data: new Uint8Array(4) }] })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    const r = raw();
    r.call.write({ kind: 'begin', begin: { ...begin('bad-total', 'grpc', makeBlocks(2, 16, 14)), total_bytes: 5 } });
    await expectEnded(r, 'INVALID_ARGUMENT');
    // Packed hashes that are not 8 bytes per block.
    const two = begin('bad-hashes', 'grpc', makeBlocks(2, 16, 17));
    const r2 = raw();
    r2.call.write({ kind: 'begin', begin: { ...two, block_hashes: two.block_hashes.subarray(0, 15) } });
    await expectEnded(r2, 'INVALID_ARGUMENT');
    await expect(tx.send({ peer: peer(), blocks: [{ hash: 'ABCDEF0123456789', data: new Uint8Array(4) }] })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    }); // hashes are lowercase
  });

  it('out-of-order messages ⇒ PROTOCOL', async () => {
    const r = raw();
    r.call.write({ kind: 'commit', commit: { block_count: 1, shm: null } });
    await expectEnded(r, 'PROTOCOL');
  });
});
