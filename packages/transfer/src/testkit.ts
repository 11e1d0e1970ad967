// Test helpers for this package: blocks, a receiver on its own gRPC server, a raw protocol client
// for playing a misbehaving sender, and a TCP proxy that cuts the connection part-way.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { Client, Metadata, credentials, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import type { TransferError } from './errors.js';
import { TRANSFER_GRPC_OPTIONS, kvTransferService } from './proto.js';
import { TransferReceiver, type TransferReceiverOptions } from './receiver.js';
import { defaultShmBase } from './shm-site.js';
import { splitHostPort } from './tcp-transport.js';
import type { IncomingTransfer, KvBlock } from './types.js';
import type { TransferDown, TransferUp } from './wire.js';

export function makeBlocks(count: number, size: number, tag = 0): KvBlock[] {
  return Array.from({ length: count }, (_, i) => ({
    hash: (tag * 1_000_000 + i).toString(16).padStart(16, '0'),
    data: new Uint8Array(randomBytes(size)),
  }));
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
    host: '127.0.0.1',
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
    rx, address, shmBase, admitted, discarded,
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
  const call = client.makeBidiStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, new Metadata(),
    { deadline: Date.now() + deadlineMs });
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

/** A TCP proxy to `target` that destroys both sides once `cutAfterBytes` went through. */
export async function cuttingProxy(target: string, cutAfterBytes: number): Promise<{ address: string; close(): void }> {
  const { host, port } = splitHostPort(target);
  const sockets = new Set<Socket>();
  const server = createServer((down) => {
    const up = connect({ host, port });
    sockets.add(down).add(up);
    let passed = 0;
    down.on('data', (chunk: Buffer) => {
      passed += chunk.byteLength;
      if (passed >= cutAfterBytes) {
        down.destroy();
        up.destroy();
      } else up.write(chunk);
    });
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
