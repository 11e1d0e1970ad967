// The receiving end of the raw TCP data plane: connections this receiver dialed to senders' data
// ports, pooled per sender. The receiver is the dialing side so that it can read with `onread`: the
// kernel copies each batch's payload straight into the transfer's receive slab, with no per-read
// Buffer and no copy in JS. A connection carries one pull at a time and is reused once it completed.
import { connect, type Socket } from 'node:net';
import { connect as connectTls, type ConnectionOptions } from 'node:tls';
import { tlsClientOptions, type TlsMaterial } from '@pdserve/rpc';
import { TransferError, asTransferError } from './errors';
import {
  BATCH_HEADER_BYTES,
  BatchReader,
  LIST_ENTRY_BYTES,
  LIST_HEADER_BYTES,
  decodeListEntries,
  decodeListHeader,
  encodeAdmitted,
  encodeListedPullRequest,
  encodePullRequest,
  tokenKey,
  type BatchTarget,
} from './frame-codec';
import type { BlockDescriptor } from './wire';

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
  /** request() asked for a transfer that start() has not begun to read yet. */
  private requested = false;
  /** A listed pull's list, being read (request() with `listMax`) until whole; then the socket pauses. */
  private listing: Listing | null = null;
  private armedForList = false;
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

  /**
   * Asks for the transfer under `token` now and reads nothing (the socket paused) until start() says where
   * its bytes go: a pipelined pull, asked for before the receiver knows the transfer's blocks.
   */
  request(token: Uint8Array): void;
  /**
   * A listed pull (`listMax`: the most blocks a list may name): the sender lists the blocks first; the
   * connection reads that list, then pauses until start(). Resolves with the list.
   */
  request(token: Uint8Array, listMax: number): Promise<BlockDescriptor[]>;
  request(token: Uint8Array, listMax?: number): Promise<BlockDescriptor[]> | undefined {
    this.requested = true;
    if (listMax === undefined) {
      this.socket.pause();
      this.socket.write(encodePullRequest(token));
      return undefined;
    }
    const list = new Promise<BlockDescriptor[]>((resolve, reject) => {
      this.listing = { token, max: listMax, header: new Uint8Array(LIST_HEADER_BYTES), body: null, fill: 0, resolve, reject };
    });
    list.catch(() => undefined); // whoever waits for it hears; a pull never begun need not
    this.socket.write(encodeListedPullRequest(token));
    return list;
  }

  /** Asks for the transfer under `token` (unless request() did); resolves once every block arrived verified. */
  start(token: Uint8Array, target: BatchTarget): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pull = { reader: new BatchReader(token, target), resolve, reject };
      if (!this.requested) this.socket.write(encodePullRequest(token));
      this.requested = false;
      this.socket.resume();
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
    const l = this.listing;
    this.armedForList = l !== null;
    if (l !== null) {
      this.armed = (l.body ?? l.header).subarray(l.fill);
      return this.armed;
    }
    const next = this.pull?.reader.next();
    this.armedForReader = next !== undefined && next.byteLength > 0;
    this.armed = this.armedForReader ? (next as Uint8Array) : this.idle;
    return this.armed;
  }

  private onRead(n: number): boolean {
    try {
      // Once the list is whole, false stops reading (as pause() does, which inside this callback is too late
      // for the read loop already under way).
      if (this.armedForList) return !this.readList(n);
      // The read armed before the list was asked for (the idle scratch) brought its first bytes: copy them over.
      if (this.listing !== null) return !this.feedList(this.armed.subarray(0, n));
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

  /** Bytes of the list that arrived elsewhere; true once it is whole (a list is longer than the scratch). */
  private feedList(bytes: Uint8Array): boolean {
    let at = 0;
    let whole = false;
    while (at < bytes.byteLength) {
      const l = this.listing;
      if (l === null) throw new TransferError('PROTOCOL', 'bytes after the list before the pull began');
      const into = (l.body ?? l.header).subarray(l.fill);
      const take = Math.min(into.byteLength, bytes.byteLength - at);
      into.set(bytes.subarray(at, at + take));
      at += take;
      whole = this.readList(take);
    }
    return whole;
  }

  /** `n` bytes of the list arrived where arm() put them; true once it is whole. */
  private readList(n: number): boolean {
    const l = this.listing as Listing;
    l.fill += n;
    if (l.body === null && l.fill === LIST_HEADER_BYTES) {
      l.body = new Uint8Array(LIST_ENTRY_BYTES * decodeListHeader(l.header, l.token, l.max));
      l.fill = 0;
    } else if (l.body !== null && l.fill === l.body.byteLength) {
      // Whole: nothing more is read (the batches wait in the kernel) until start() knows where they go.
      this.listing = null;
      this.socket.pause();
      l.resolve(decodeListEntries(l.body));
      return true;
    }
    return false;
  }

  private end(error: TransferError | null): void {
    const l = this.listing;
    this.listing = null;
    if (l !== null && error !== null) l.reject(error);
    const pull = this.pull;
    this.pull = null;
    if (pull === null) return;
    if (error === null) pull.resolve();
    else pull.reject(error);
  }
}

/** A data connection that asked for a transfer before it was offered (TcpPullPool.prepare), until pulled or cancelled. */
export interface PreparedPull {
  /** The sender's data port. */
  readonly source: string;
  /** The token asked for: whoever offers the blocks must offer them under it. */
  readonly token: Uint8Array;
  /** A listed pull: the blocks as the sender lists them once it offers them; rejects if the connection ends first. */
  readonly list?: Promise<readonly BlockDescriptor[]>;
}

/** A listed pull's list as it is read. */
interface Listing {
  readonly token: Uint8Array;
  readonly max: number;
  readonly header: Uint8Array;
  body: Uint8Array | null;
  fill: number;
  readonly resolve: (list: BlockDescriptor[]) => void;
  readonly reject: (e: TransferError) => void;
}

/** Data connections by sender address. */
export class TcpPullPool {
  private readonly idle = new Map<string, PullConnection[]>();
  private readonly busy = new Set<PullConnection>();
  private readonly prepared = new Map<PreparedPull, PullConnection>();
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
  async pull(address: string, token: Uint8Array, target: BatchTarget, signal: AbortSignal, prepared?: PreparedPull): Promise<() => void> {
    // The connection prepare() opened for this very transfer, if any (another one is of no use: let it go).
    let conn = prepared === undefined ? undefined : this.prepared.get(prepared);
    if (prepared !== undefined) this.prepared.delete(prepared);
    if (conn !== undefined && (prepared!.source !== address || tokenKey(prepared!.token) !== tokenKey(token))) {
      this.busy.delete(conn);
      conn.abort(new TransferError('ABORTED', 'prepared for another transfer'));
      conn = undefined;
    }
    if (this.closed) throw new TransferError('UNAVAILABLE', 'receiver closed');
    if (signal.aborted) conn?.abort(new TransferError('ABORTED', 'transfer aborted'));
    signal.throwIfAborted();
    conn ??= this.acquire(address);
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

  /**
   * Dials (or reuses) a connection to `address` and asks it for `token` at once, reading nothing until pull()
   * names where the bytes go (a pipelined pull: asked for in parallel with whatever makes the sender offer
   * them). With `listMax`, a listed pull: the sender lists the blocks first (PreparedPull.list). Give it to
   * pull() or cancel().
   */
  prepare(address: string, token: Uint8Array, listMax?: number): PreparedPull {
    if (this.closed) throw new TransferError('UNAVAILABLE', 'receiver closed');
    const conn = this.acquire(address);
    this.busy.add(conn);
    const list = listMax === undefined ? (conn.request(token), undefined) : conn.request(token, listMax);
    const p: PreparedPull = { source: address, token, list };
    this.prepared.set(p, conn);
    return p;
  }

  /** Drops a prepared pull that will not be pulled: its connection, which asked for it, is closed. */
  cancel(prepared: PreparedPull): void {
    const conn = this.prepared.get(prepared);
    if (conn === undefined) return; // pulled (or cancelled) already
    this.prepared.delete(prepared);
    this.busy.delete(conn);
    conn.abort(new TransferError('ABORTED', 'prepared pull cancelled'));
  }

  close(): void {
    this.closed = true;
    for (const list of this.idle.values()) for (const c of list) c.socket.destroy();
    this.idle.clear();
    this.prepared.clear();
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
