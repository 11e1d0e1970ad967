// The sending end of the raw TCP data plane: a pool of data connections per receiver address, and
// the frame writer. Frames go out in corked batches (one writev per batch; the kernel copies the
// block bytes, JS never does), and at most `maxInFlightBytes` sit queued in user space before the
// writer waits for the socket to drain.
import { connect, type Socket } from 'node:net';
import { xxh32 } from './checksum.js';
import { TransferError } from './errors.js';
import { FRAME_HEADER_BYTES, encodeFrameHeader } from './frame-codec.js';
import type { KvBlock } from './types.js';

export interface TcpSendOptions {
  /** Bytes queued in user space before waiting for drain (default 8 MiB). */
  readonly maxInFlightBytes?: number;
  /** Bytes per corked batch, i.e. per writev (default 2 MiB). */
  readonly batchBytes?: number;
}

/** Writes every block as one frame; resolves when the last byte is handed to the kernel. */
export async function sendFrames(
  socket: Socket, token: Uint8Array, blocks: readonly KvBlock[], signal: AbortSignal, opts: TcpSendOptions = {},
): Promise<void> {
  const maxInFlight = opts.maxInFlightBytes ?? 8 * 1024 * 1024;
  const batchBytes = opts.batchBytes ?? 2 * 1024 * 1024;
  const headers = Buffer.allocUnsafe(FRAME_HEADER_BYTES * blocks.length);
  const broken = watchSocket(socket, signal);
  let markWritten = (): void => undefined;
  // Resolves when the last frame has been handed to the kernel (or the socket died: see `broken`).
  const written = new Promise<void>((resolve) => {
    markWritten = resolve;
  });
  try {
    let i = 0;
    while (i < blocks.length) {
      broken.throwIfBroken();
      socket.cork();
      let batch = 0;
      while (i < blocks.length && batch < batchBytes) {
        const data = (blocks[i] as KvBlock).data;
        const header = headers.subarray(i * FRAME_HEADER_BYTES, (i + 1) * FRAME_HEADER_BYTES);
        encodeFrameHeader(header, token, i, data.byteLength, xxh32(data));
        socket.write(header);
        if (i === blocks.length - 1) socket.write(data, () => markWritten());
        else socket.write(data);
        batch += FRAME_HEADER_BYTES + data.byteLength;
        i++;
      }
      socket.uncork();
      if (socket.writableLength > maxInFlight) await broken.race(drained(socket));
    }
    await broken.race(blocks.length === 0 ? Promise.resolve() : written);
  } finally {
    broken.dispose();
  }
}

function drained(socket: Socket): Promise<void> {
  return new Promise((resolve) => socket.once('drain', resolve));
}

/** Turns socket death and abort into a rejection any wait can race against. */
function watchSocket(socket: Socket, signal: AbortSignal) {
  let failure: TransferError | null = null;
  let rejectWait: ((e: TransferError) => void) | null = null;
  const fail = (e: TransferError): void => {
    failure ??= e;
    rejectWait?.(failure);
  };
  const onClose = (): void => fail(new TransferError('CONNECTION_LOST', 'data connection closed mid-transfer'));
  const onError = (e: Error): void => fail(new TransferError('CONNECTION_LOST', `data connection: ${e.message}`, { cause: e }));
  const onAbort = (): void => {
    fail(new TransferError('ABORTED', 'transfer aborted'));
    socket.destroy();
  };
  socket.on('close', onClose);
  socket.on('error', onError);
  signal.addEventListener('abort', onAbort);
  if (signal.aborted) onAbort();
  return {
    throwIfBroken(): void {
      if (failure !== null) throw failure;
    },
    async race(p: Promise<void>): Promise<void> {
      if (failure !== null) throw failure;
      await new Promise<void>((resolve, reject) => {
        rejectWait = reject;
        p.then(resolve, reject);
      }).finally(() => {
        rejectWait = null;
      });
    },
    dispose(): void {
      socket.off('close', onClose);
      socket.off('error', onError);
      signal.removeEventListener('abort', onAbort);
    },
  };
}

export interface TcpPoolOptions {
  /** Idle connections kept per receiver address (default 2). */
  readonly maxIdlePerPeer?: number;
  /** An idle connection is closed after this long (ms, default 30 s; below the receiver's 120 s). */
  readonly idleTimeoutMs?: number;
}

/** Data connections by receiver address. A connection is exclusive to one transfer while checked out. */
export class TcpConnectionPool {
  private readonly idle = new Map<string, Socket[]>();
  private readonly idleDrops = new Map<Socket, () => void>();
  private readonly maxIdle: number;
  private readonly idleTimeoutMs: number;
  private closed = false;

  constructor(opts: TcpPoolOptions = {}) {
    this.maxIdle = opts.maxIdlePerPeer ?? 2;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 30_000;
  }

  async acquire(address: string, signal: AbortSignal): Promise<Socket> {
    const list = this.idle.get(address);
    while (list !== undefined && list.length > 0) {
      const s = list.pop() as Socket;
      if (!s.destroyed && s.writable && !s.readableEnded) {
        this.checkOut(s);
        return s;
      }
    }
    return this.dial(address, signal);
  }

  /** Returns a connection whose transfer completed; anything else must be destroyed instead. */
  release(address: string, socket: Socket): void {
    if (this.closed || socket.destroyed || !socket.writable || socket.writableLength > 0) {
      socket.destroy();
      return;
    }
    const list = this.idle.get(address) ?? [];
    if (list.length >= this.maxIdle) {
      socket.destroy();
      return;
    }
    list.push(socket);
    this.idle.set(address, list);
    socket.unref();
    socket.setTimeout(this.idleTimeoutMs); // dial() made 'timeout' destroy the socket
    // The receiver never writes on a data connection: any end or close means it is gone.
    const drop = (): void => {
      const l = this.idle.get(address);
      const at = l?.indexOf(socket) ?? -1;
      if (l !== undefined && at >= 0) l.splice(at, 1);
      this.idleDrops.delete(socket);
      socket.destroy();
    };
    socket.once('end', drop);
    socket.once('close', drop);
    this.idleDrops.set(socket, drop);
  }

  close(): void {
    this.closed = true;
    for (const list of this.idle.values()) for (const s of list) s.destroy();
    this.idle.clear();
  }

  private checkOut(s: Socket): void {
    const drop = this.idleDrops.get(s);
    if (drop !== undefined) {
      s.off('end', drop);
      s.off('close', drop);
      this.idleDrops.delete(s);
    }
    s.setTimeout(0);
    s.ref();
  }

  private dial(address: string, signal: AbortSignal): Promise<Socket> {
    const { host, port } = splitHostPort(address);
    return new Promise((resolve, reject) => {
      const s = connect({ host, port, noDelay: true });
      const onAbort = (): void => {
        s.destroy();
        reject(new TransferError('ABORTED', 'transfer aborted while connecting'));
      };
      s.on('error', () => undefined); // failures surface through the listeners below and the writer
      s.on('timeout', () => s.destroy()); // armed only while idle in the pool
      s.once('error', (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(new TransferError('UNAVAILABLE', `data plane ${address}: ${e.message}`, { cause: e }));
      });
      s.once('connect', () => {
        signal.removeEventListener('abort', onAbort);
        resolve(s);
      });
      signal.addEventListener('abort', onAbort, { once: true });
      if (signal.aborted) onAbort();
    });
  }
}

export function splitHostPort(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(':');
  const port = Number(address.slice(at + 1));
  let host = address.slice(0, at);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (at <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new TransferError('INVALID_ARGUMENT', `bad address ${JSON.stringify(address)}`);
  }
  return { host, port };
}
