// The sending end of the raw TCP data plane: the sender's data port. A transfer is offered here under
// a random token (named in Begin); the receiver dials in, asks for the token, and gets the blocks in
// batches (see frame-codec.ts); once its application took them it says so on the same connection. A
// connection serves one pull at a time and stays open for the receiver's next one. Batches go out
// corked (one writev each; the kernel copies the block bytes, JS never does), with at most
// `maxInFlightBytes` queued in user space before the writer waits for drain.
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { plainHost, tlsServerOptions, type TlsMaterial } from '@pdserve/rpc';
import { blockChecksum } from './checksum';
import { TransferError } from './errors';
import { MAX_BATCH_BLOCKS, PULL_REQUEST_BYTES, TOKEN_BYTES, decodeRequest, encodeBatchHead, encodeList, tokenKey } from './frame-codec';
import type { KvBlock } from './types';

export interface TcpSendOptions {
  /** Bytes queued in user space before waiting for drain (default 8 MiB). */
  readonly maxInFlightBytes?: number;
  /** Payload bytes per batch, i.e. per writev (default 2 MiB; a batch holds at least one block). */
  readonly batchBytes?: number;
}

export interface TcpSourceOptions extends TcpSendOptions {
  /** Address the data port binds (default 127.0.0.1). */
  readonly host?: string;
  /** Address receivers dial (default `host`). */
  readonly advertiseHost?: string;
  /** Data port (default 0: any free port). */
  readonly port?: number;
  /** host:port receivers dial, when it is not advertiseHost:port (a proxy or NAT in between). */
  readonly advertiseAddress?: string;
  /** A connection idle this long is closed (ms, default 120 s). */
  readonly idleTimeoutMs?: number;
  /** mTLS: only receivers with a certificate signed by our CA get a connection; plaintext without. */
  readonly tls?: TlsMaterial;
}

/** A transfer waiting to be pulled. */
export interface TcpOffer {
  /** Goes in Begin; the receiver's pull request names it. */
  readonly token: Uint8Array;
  /** Resolves when the last byte is handed to the kernel; rejects if the pull fails or never comes. */
  readonly written: Promise<void>;
  /**
   * Resolves when the receiver says, on the data connection, that its application admitted the blocks
   * (as its gRPC Admitted will); never, if that connection closed first (the gRPC word still comes).
   */
  readonly admitted: Promise<void>;
  /**
   * Resolves, with why, if the connection that pulled every block closed before the receiver said Admitted
   * on it; never otherwise. (A transfer with no Transfer call has no other word: see TransferSender.offer.)
   */
  readonly lost: Promise<TransferError>;
  /** Takes the offer back (the transfer ended); a pull still writing it is cut. */
  withdraw(): void;
}

/** Who may pull an offer, and under which token. */
export interface OfferLimits {
  /** Only a connection from this host (the host that asked for the blocks); any, without. */
  readonly peerHost?: string;
  /**
   * The token, minted by the receiver, whose pull request may already be here, waiting (a pipelined pull:
   * the receiver asked for the blocks and for this token at once). Default: a fresh random one.
   */
  readonly token?: Uint8Array;
}

/** How long a pull request for a token nobody offered yet waits for its offer before its connection is closed (ms). */
export const PARKED_PULL_MS = 5_000;

interface Pending {
  readonly blocks: readonly KvBlock[];
  readonly signal: AbortSignal;
  readonly peerHost: string | undefined;
  readonly resolve: () => void;
  readonly reject: (e: TransferError) => void;
  socket: Socket | null;
}

export class TcpSource {
  private readonly offers = new Map<string, Pending>();
  /**
   * Offers waiting for the receiver's admission, by token, until it comes or the offer is withdrawn; only
   * the connection that pulled an offer may admit it.
   */
  private readonly admissions = new Map<string, Admission>();
  /** Pull requests that came before their offer (pipelined pulls), by token, until it comes or they give up. */
  private readonly parked = new Map<string, () => void>();
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    private readonly opts: TcpSourceOptions,
  ) {
    server.on(opts.tls === undefined ? 'connection' : 'secureConnection', (s: Socket) => this.onConnection(s));
    // A handshake that fails (plaintext, no certificate, another CA) only closes that socket.
    server.on('tlsClientError', (_e: Error, s: Socket) => s.destroy());
  }

  static async listen(opts: TcpSourceOptions = {}): Promise<TcpSource> {
    const server =
      opts.tls === undefined ? createServer({ noDelay: true }) : createTlsServer({ noDelay: true, ...tlsServerOptions(opts.tls) });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(new TransferError('UNAVAILABLE', `tcp data port: ${e.message}`, { cause: e })));
      server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
        server.removeAllListeners('error');
        server.on('error', () => undefined); // accept failures (EMFILE...): the receiver's dial fails and it says so
        resolve();
      });
    });
    return new TcpSource(server, opts);
  }

  /** The host:port receivers dial. */
  get address(): string {
    if (this.opts.advertiseAddress !== undefined) return this.opts.advertiseAddress;
    const host = this.opts.advertiseHost ?? this.opts.host ?? '127.0.0.1';
    return `${host.includes(':') ? `[${host}]` : host}:${(this.server.address() as AddressInfo).port}`;
  }

  offer(blocks: readonly KvBlock[], signal: AbortSignal, limits: OfferLimits = {}): TcpOffer {
    const token = limits.token === undefined ? randomBytes(TOKEN_BYTES) : Uint8Array.from(limits.token);
    const key = tokenKey(token);
    if (token.byteLength !== TOKEN_BYTES || this.offers.has(key) || this.admissions.has(key)) {
      throw new TransferError('INVALID_ARGUMENT', `token of ${token.byteLength} bytes, or one already offered`);
    }
    let resolve = (): void => undefined;
    let reject = (_e: TransferError): void => undefined;
    const written = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    written.catch(() => undefined); // the caller races it against the transfer's signal
    let lose = (_e: TransferError): void => undefined;
    const lost = new Promise<TransferError>((res) => {
      lose = res;
    });
    const admitted = new Promise<void>((res) => this.admissions.set(key, { resolve: res, lose, pulledBy: null, onClose: null }));
    this.offers.set(key, {
      blocks,
      signal,
      peerHost: limits.peerHost === undefined ? undefined : plainHost(limits.peerHost),
      resolve,
      reject,
      socket: null,
    });
    this.parked.get(key)?.(); // its pull request came first
    return {
      token,
      written,
      admitted,
      lost,
      withdraw: () => {
        const p = this.offers.get(key);
        this.offers.delete(key);
        this.forget(key);
        // Cut mid-pull: a half-sent transfer cannot be resumed on that connection.
        p?.socket?.destroy();
        p?.reject(new TransferError('ABORTED', 'offer withdrawn'));
      },
    };
  }

  async close(): Promise<void> {
    for (const done of [...this.parked.values()]) done();
    for (const p of this.offers.values()) p.reject(new TransferError('UNAVAILABLE', 'sender closed'));
    this.offers.clear();
    this.admissions.clear();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onConnection(socket: Socket): void {
    this.sockets.add(socket);
    socket.setTimeout(this.opts.idleTimeoutMs ?? 120_000, () => socket.destroy());
    socket.on('error', () => undefined); // 'close' follows
    socket.on('close', () => this.sockets.delete(socket));
    // Requests are 16 bytes; a receiver asks for the next transfer only after the last one arrived,
    // but the request may still overtake this side's bookkeeping, so pulls queue. An admission is told
    // at once.
    let buffered: Buffer = Buffer.alloc(0);
    let serving: Promise<void> = Promise.resolve();
    socket.on('data', (chunk: Buffer) => {
      buffered = buffered.byteLength === 0 ? chunk : Buffer.concat([buffered, chunk]);
      while (buffered.byteLength >= PULL_REQUEST_BYTES) {
        const bytes = buffered.subarray(0, PULL_REQUEST_BYTES);
        buffered = buffered.subarray(PULL_REQUEST_BYTES);
        let request: ReturnType<typeof decodeRequest>;
        try {
          request = decodeRequest(bytes);
        } catch {
          socket.destroy();
          return;
        }
        const { token } = request;
        if (request.kind === 'admitted') this.admitted(token, socket);
        else serving = serving.then(() => this.serve(socket, token, request.kind === 'listed-pull'));
      }
    });
  }

  /** The receiver admitted the transfer under `token`; from another connection, or for no offer, it is ignored. */
  private admitted(token: Uint8Array, socket: Socket): void {
    const key = tokenKey(token);
    const a = this.admissions.get(key);
    if (a === undefined || a.pulledBy !== socket) return;
    this.forget(key);
    a.resolve();
  }

  /** Stops waiting for the admission of the offer under `key`. */
  private forget(key: string): void {
    const a = this.admissions.get(key);
    this.admissions.delete(key);
    if (a?.onClose != null) a.pulledBy?.off('close', a.onClose);
  }

  /** Waits for the offer under `key` (at most PARKED_PULL_MS, and no longer than the connection lives). */
  private park(key: string, socket: Socket): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        socket.off('close', done);
        if (this.parked.get(key) === done) this.parked.delete(key);
        resolve();
      };
      const timer = setTimeout(done, PARKED_PULL_MS);
      socket.once('close', done);
      this.parked.set(key, done);
    });
  }

  /** Serves a pull: its blocks' list first if asked (a listed pull), then the batches. */
  private async serve(socket: Socket, token: Uint8Array, listed: boolean): Promise<void> {
    const key = tokenKey(token);
    // Asked for before it was offered (a pipelined pull): wait for it; one such wait per token.
    if (!this.offers.has(key) && !this.parked.has(key) && !socket.destroyed) await this.park(key, socket);
    const p = this.offers.get(key);
    // Unknown (withdrawn, or never offered), already taken, or asked from a host it is not for: the
    // connection is closed (the receiver fails the transfer).
    if (
      p === undefined ||
      p.socket !== null ||
      socket.destroyed ||
      (p.peerHost !== undefined && plainHost(socket.remoteAddress ?? '') !== p.peerHost)
    ) {
      socket.destroy();
      return;
    }
    p.socket = socket;
    const a = this.admissions.get(key);
    if (a !== undefined) a.pulledBy = socket;
    socket.setTimeout(0);
    try {
      if (listed)
        socket.write(
          encodeList(
            token,
            p.blocks.map((b) => ({ hash: b.hash, length: b.data.byteLength })),
          ),
        );
      await writeBatches(socket, token, p.blocks, p.signal, this.opts);
      this.offers.delete(key);
      p.socket = null;
      if (a !== undefined && this.admissions.get(key) === a) {
        // Every byte is out; the word that they were admitted is still to come on this connection.
        a.onClose = () => {
          this.forget(key);
          a.lose(new TransferError('CONNECTION_LOST', 'data connection closed before the receiver admitted the transfer'));
        };
        if (socket.destroyed) a.onClose();
        else socket.once('close', a.onClose);
      }
      p.resolve();
      socket.setTimeout(this.opts.idleTimeoutMs ?? 120_000);
    } catch (e) {
      this.offers.delete(key);
      socket.destroy();
      p.reject(e instanceof TransferError ? e : new TransferError('CONNECTION_LOST', String(e), { cause: e }));
    }
  }
}

/** An offer waiting for its receiver's word that it was admitted. */
interface Admission {
  readonly resolve: () => void;
  readonly lose: (e: TransferError) => void;
  /** The connection that pulled the offer: the only one whose word counts. */
  pulledBy: Socket | null;
  /** Listens on pulledBy for its close, once every byte is out. */
  onClose: (() => void) | null;
}

/** Writes the blocks as batches; resolves when the last byte is handed to the kernel. */
export async function writeBatches(
  socket: Socket,
  token: Uint8Array,
  blocks: readonly KvBlock[],
  signal: AbortSignal,
  opts: TcpSendOptions = {},
): Promise<void> {
  const maxInFlight = opts.maxInFlightBytes ?? 8 * 1024 * 1024;
  const batchBytes = opts.batchBytes ?? 2 * 1024 * 1024;
  const broken = watchSocket(socket, signal);
  const encrypted = (socket as { encrypted?: boolean }).encrypted === true;
  let markWritten = (): void => undefined;
  // Resolves when the last batch has been handed to the kernel (or the socket died: see `broken`).
  const written = new Promise<void>((resolve) => {
    markWritten = resolve;
  });
  try {
    let i = 0;
    while (i < blocks.length) {
      broken.throwIfBroken();
      const first = i;
      const sums: number[] = [];
      let payload = 0;
      while (i < blocks.length && sums.length < MAX_BATCH_BLOCKS && (sums.length === 0 || payload < batchBytes)) {
        const { data, checksum } = blocks[i] as KvBlock;
        sums.push(checksum ?? blockChecksum(data));
        payload += data.byteLength;
        i++;
      }
      // Plaintext: one writev per batch. TLS: no cork, since a TLS socket copies a writev's buffers into one
      // before encrypting; written one by one, each block is encrypted straight from where it lies.
      if (!encrypted) socket.cork();
      socket.write(encodeBatchHead(token, first, sums, payload));
      for (let k = first; k < i; k++) {
        socket.write((blocks[k] as KvBlock).data, k === blocks.length - 1 ? markWritten : undefined);
      }
      if (!encrypted) socket.uncork();
      if (socket.writableLength > maxInFlight) await broken.race(drained(socket));
    }
    await broken.race(written);
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
  if (socket.destroyed) onClose();
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
