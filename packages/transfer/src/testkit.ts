// Test helpers for this package: blocks, a receiver on its own gRPC server, a raw protocol client
// for playing a misbehaving sender, and a TCP proxy that cuts the connection part-way.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { Client, Metadata, credentials, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { blockChecksum } from './checksum';
import type { TransferError } from './errors';
import { encodeBatchHead } from './frame-codec';
import { TRANSFER_GRPC_OPTIONS, kvTransferService } from './proto';
import { TransferReceiver, type TransferReceiverOptions } from './receiver';
import { defaultShmBase } from './shm-site';
import { splitHostPort } from './tcp-pull';
import type { IncomingTransfer, KvBlock } from './types';
import type { TransferDown, TransferUp } from './wire';

export function makeBlocks(count: number, size: number, tag = 0): KvBlock[] {
  return Array.from({ length: count }, (_, i) => ({
    hash: (tag * 1_000_000 + i).toString(16).padStart(16, '0'),
    data: new Uint8Array(randomBytes(size)),
  }));
}

/**
 * The bytes a sender writes for `blocks` on a pull: batches of `perBatch` blocks. `corrupt` names a
 * block whose checksum is sent wrong.
 */
export function batchStream(token: Uint8Array, blocks: readonly KvBlock[], perBatch: number, corrupt = -1): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let first = 0; first < blocks.length; first += perBatch) {
    const batch = blocks.slice(first, first + perBatch);
    const sums = batch.map((b, k) => blockChecksum(b.data) ^ (first + k === corrupt ? 1 : 0));
    const payload = batch.reduce((n, b) => n + b.data.byteLength, 0);
    parts.push(encodeBatchHead(token, first, sums, payload));
    for (const b of batch) parts.push(b.data);
  }
  return Buffer.concat(parts);
}

/** A stand-in sender data port: answers each pull request with whatever `respond` writes. */
export async function fakeSource(respond: (token: Uint8Array, socket: Socket) => void): Promise<{ address: string; close(): void }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    let got = Buffer.alloc(0);
    s.on('data', (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
      if (got.byteLength >= 16) {
        respond(got.subarray(8, 16), s);
        got = got.subarray(16);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  return {
    address: `127.0.0.1:${typeof addr === 'object' && addr !== null ? addr.port : 0}`,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

export async function waitFor(cond: () => boolean, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

export interface Harness {
  readonly rx: TransferReceiver;
  readonly address: string;
  readonly shmBase: string;
  readonly admitted: IncomingTransfer[];
  readonly discarded: { readonly transferId: string; readonly error: TransferError }[];
  close(): Promise<void>;
}

/** A receiver on its own gRPC server, with a private shm base under /dev/shm (or the temp dir). */
export async function startHarness(opts: Partial<TransferReceiverOptions> = {}): Promise<Harness> {
  const shmBase = mkdtempSync(join(defaultShmBase(), 'pdserve-transfer-test-'));
  const admitted: IncomingTransfer[] = [];
  const discarded: { transferId: string; error: TransferError }[] = [];
  const rx = await TransferReceiver.start({
    shmBase,
    onTransfer: (t) => {
      t.retain(); // the tests look at the blocks after admission
      admitted.push(t);
    },
    onDiscard: (transferId, error) => discarded.push({ transferId, error }),
    ...opts,
  });
  const address = await rx.serveGrpc('127.0.0.1', 0);
  return {
    rx,
    address,
    shmBase,
    admitted,
    discarded,
    close: async () => {
      await rx.close();
      rmSync(shmBase, { recursive: true, force: true });
    },
  };
}

/** A bare Transfer call, to speak the protocol by hand. */
export interface RawCall {
  readonly call: ClientDuplexStream<TransferUp, TransferDown>;
  /** The messages received so far. */
  readonly received: TransferDown[];
  /** Resolves with the call's final gRPC error, or null if it ended OK. */
  readonly ended: Promise<ServiceError | null>;
  close(): void;
}

export function rawTransferCall(address: string, deadlineMs = 10_000): RawCall {
  const client = new Client(address, credentials.createInsecure(), TRANSFER_GRPC_OPTIONS);
  const m = kvTransferService().Transfer;
  const call = client.makeBidiStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, new Metadata(), {
    deadline: Date.now() + deadlineMs,
  });
  const received: TransferDown[] = [];
  call.on('data', (d: TransferDown) => received.push(d));
  const ended = new Promise<ServiceError | null>((resolve) => {
    call.on('error', (e: ServiceError) => resolve(e));
    call.on('status', (s) => {
      if (s.code === 0) resolve(null);
    });
  });
  return { call, received, ended, close: () => client.close() };
}

/** A TCP proxy to `target` that destroys both sides once `cutAfterBytes` went through, either way. */
export async function cuttingProxy(target: () => string, cutAfterBytes: number): Promise<{ address: string; close(): void }> {
  const sockets = new Set<Socket>();
  const server = createServer((down) => {
    const up = connect(splitHostPort(target()));
    sockets.add(down).add(up);
    let passed = 0;
    const relay = (from: Socket, to: Socket): void => {
      from.on('data', (chunk: Buffer) => {
        passed += chunk.byteLength;
        if (passed >= cutAfterBytes) {
          down.destroy();
          up.destroy();
        } else to.write(chunk);
      });
    };
    relay(down, up);
    relay(up, down);
    for (const s of [down, up]) {
      s.on('error', () => undefined);
      s.on('close', () => (s === down ? up : down).destroy());
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const proxyPort = typeof addr === 'object' && addr !== null ? addr.port : 0;
  return {
    address: `127.0.0.1:${proxyPort}`,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}
