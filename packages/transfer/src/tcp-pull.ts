// The receiving end of the raw TCP data plane: connections this receiver dialed to senders' data
// ports, pooled per sender. The receiver is the dialing side so that it can read with `onread`: the
// kernel copies each batch's payload straight into the transfer's receive slab, with no per-read
// Buffer and no copy in JS. A connection carries one pull at a time and is reused once it completed.
import { connect, type Socket } from 'node:net';
import { connect as connectTls, type ConnectionOptions } from 'node:tls';
import { tlsClientOptions, type TlsMaterial } from '@pdserve/rpc';
import { TransferError, asTransferError } from './errors';
import { BATCH_HEADER_BYTES, BatchReader, encodeAdmitted, encodePullRequest, type BatchTarget } from './frame-codec';

export interface TcpPullOptions {
  /** Idle connections kept per sender (default 4). */
  readonly maxIdlePerPeer?: number;
  /** An idle connection is closed after this long (ms, default 30 s; below the sender's 120 s). */
  readonly idleTimeoutMs?: number;
  /** Dial senders' data ports with mTLS (our certificate, theirs checked against our CA); plaintext without. */
  readonly tls?: TlsMaterial;
}

interface Pull {
  readonly reader: BatchReader;
  readonly resolve: () => void;
  readonly reject: (e: TransferError) => void;
}

/** One connection to a sender's data port. */
class PullConnection {
  /** Where reads land between pulls: exactly one batch header, so nothing of a payload does. */
  private readonly idle = new Uint8Array(BATCH_HEADER_BYTES);
  private pull: Pull | null = null;
  /** The buffer handed to the socket for its next read. */
  private armed: Uint8Array = this.idle;
  private armedForReader = false;
  readonly socket: Socket;
  broken = false;
  /** Told when the connection closes (the pool drops it from its idle list). */
  onClosed: (() => void) | null = null;

  constructor(host: string, port: number, tls: TlsMaterial | undefined) {
    // With TLS the records are decrypted in JS land, then `onread` still lands them in the slab.
    const onread = { buffer: () => this.arm(), callback: (n: number) => this.onRead(n) };
    this.socket =
      tls === undefined
        ? connect({ host, port, noDelay: true, onread })
        : connectTls({ host, port, ...tlsClientOptions(tls), onread } as ConnectionOptions).setNoDelay(true); // Node takes onread here too; @types/node omits it
    this.socket.on('error', () => undefined); // 'close' follows
    this.socket.on('timeout', () => this.socket.destroy()); // armed only while idle in the pool
    let connected = false;
    this.socket.once(tls === undefined ? 'connect' : 'secureConnect', () => {
      connected = true;
    });
    this.socket.on('close', () => {
      this.broken = true;
      this.end(
        connected
          ? new TransferError('CONNECTION_LOST', 'data connection closed mid-transfer')
          : new TransferError('UNAVAILABLE', `cannot reach the sender's data port ${host}:${port}`),
      );
      this.onClosed?.();
    });
  }

  /** Asks for the transfer under `token`; resolves once every block arrived verified. */
  start(token: Uint8Array, target: BatchTarget): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pull = { reader: new BatchReader(token, target), resolve, reject };
      this.socket.write(encodePullRequest(token));
    });
  }

  /** Tells the sender its transfer under `token` was admitted, if this connection still stands. */
  admitted(token: Uint8Array): void {
    if (!this.broken && !this.socket.destroyed) this.socket.write(encodeAdmitted(token));
  }

  /** Fails the pull in progress and closes the connection. */
  abort(error: TransferError): void {
    this.broken = true;
    this.end(error);
    this.socket.destroy();
  }

  private arm(): Uint8Array {
    const next = this.pull?.reader.next();
    this.armedForReader = next !== undefined && next.byteLength > 0;
    this.armed = this.armedForReader ? (next as Uint8Array) : this.idle;
    return this.armed;
  }

  private onRead(n: number): boolean {
    try {
      const pull = this.pull;
      if (pull === null) throw new TransferError('PROTOCOL', 'bytes on an idle data connection');
      // Reads armed while idle (the first bytes of a pull) landed in the scratch: copy them over.
      const complete = this.armedForReader ? pull.reader.advance(n) : pull.reader.feed(this.armed.subarray(0, n));
      if (complete) this.end(null);
    } catch (e) {
      this.abort(asTransferError(e, 'PROTOCOL'));
    }
    return true;
  }

  private end(error: TransferError | null): void {
    const pull = this.pull;
    this.pull = null;
    if (pull === null) return;
    if (error === null) pull.resolve();
    else pull.reject(error);
  }
}

/** Data connections by sender address. */
export class TcpPullPool {
  private readonly idle = new Map<string, PullConnection[]>();
  private readonly busy = new Set<PullConnection>();
  private readonly maxIdle: number;
  private readonly idleTimeoutMs: number;
  private readonly tls: TlsMaterial | undefined;
  private closed = false;

  constructor(opts: TcpPullOptions = {}) {
    this.maxIdle = opts.maxIdlePerPeer ?? 4;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 30_000;
    this.tls = opts.tls;
  }

  /**
   * Pulls the transfer offered under `token` at `address` into `target`; resolves, once every block is in,
   * with a function that tells the sender the transfer was admitted (on the same connection, if it still
   * stands: the gRPC Admitted says it too). Rejects with a TransferError.
   */
  async pull(address: string, token: Uint8Array, target: BatchTarget, signal: AbortSignal): Promise<() => void> {
    if (this.closed) throw new TransferError('UNAVAILABLE', 'receiver closed');
    signal.throwIfAborted();
    const conn = this.acquire(address);
    const onAbort = (): void => conn.abort(new TransferError('ABORTED', 'transfer aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    this.busy.add(conn);
    try {
      await conn.start(token, target);
      this.release(address, conn);
      return () => conn.admitted(token);
    } catch (e) {
      conn.abort(asTransferError(e, 'CONNECTION_LOST'));
      throw signal.aborted ? asTransferError(signal.reason, 'ABORTED') : asTransferError(e, 'CONNECTION_LOST');
    } finally {
      this.busy.delete(conn);
      signal.removeEventListener('abort', onAbort);
    }
  }

  close(): void {
    this.closed = true;
    for (const list of this.idle.values()) for (const c of list) c.socket.destroy();
    this.idle.clear();
    for (const c of this.busy) c.abort(new TransferError('UNAVAILABLE', 'receiver closed'));
  }

  private acquire(address: string): PullConnection {
    const list = this.idle.get(address);
    while (list !== undefined && list.length > 0) {
      const c = list.pop() as PullConnection;
      if (!c.broken && !c.socket.destroyed) {
        c.onClosed = null;
        c.socket.setTimeout(0);
        c.socket.ref();
        return c;
      }
    }
    const { host, port } = splitHostPort(address);
    return new PullConnection(host, port, this.tls);
  }

  private release(address: string, c: PullConnection): void {
    const list = this.idle.get(address) ?? [];
    if (this.closed || c.broken || list.length >= this.maxIdle) {
      c.socket.destroy();
      return;
    }
    list.push(c);
    this.idle.set(address, list);
    c.socket.unref();
    c.socket.setTimeout(this.idleTimeoutMs);
    c.onClosed = () => {
      const at = list.indexOf(c);
      if (at >= 0) list.splice(at, 1);
    };
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
