// The sending end of the transfer engine: picks a transport per peer, and runs each transfer under
// one AbortController that the caller's signal, the deadline and the receiver can all abort.
import { randomBytes } from 'node:crypto';
import { Client, type ChannelOptions, type ServiceError } from '@grpc/grpc-js';
import { channelCredentials, tlsChannelOptions, type TlsMaterial } from '@pdserve/rpc';
import { raceSignal, reasonOf } from './abort';
import { TransferError, fromGrpcError } from './errors';
import { DEFAULT_CHUNK_BYTES } from './grpc-transport';
import { MAX_MESSAGE_BYTES, TRANSFER_GRPC_OPTIONS, kvTransferService, type KvTransferMethods } from './proto';
import { TRANSFER_ID_PATTERN } from './receive-session';
import { runSendSession } from './send-session';
import { probeShmSite, type ShmSite } from './shm-site';
import { sweepStaleSegments } from './shm-transport';
import { TcpSource, type TcpOffer, type TcpSourceOptions } from './tcp-source';
import { TOKEN_BYTES } from './frame-codec';
import {
  BLOCK_HASH_PATTERN,
  isTransportKind,
  type KvBlock,
  type TransferAdvertisement,
  type TransferMeta,
  type TransferPeer,
  type TransferReceipt,
  type TransportKind,
} from './types';
import type { TransferAdvertisementMsg } from './wire';

export interface TransferSenderOptions {
  /** Directory under which the shm site lives; must match the receiver's (default /dev/shm, else temp dir). */
  readonly shmBase?: string;
  /** The data port receivers pull tcp transfers from (bound on first use, or by listen()). */
  readonly tcp?: TcpSourceOptions;
  /** Payload bytes per gRPC message on the grpc transport (default 1 MiB). */
  readonly grpcChunkBytes?: number;
  /** Deadline of a send that names none (ms, default 30 s). */
  readonly defaultDeadlineMs?: number;
  /** How long a fetched advertisement is trusted (ms, default 30 s). */
  readonly advertisementTtlMs?: number;
  readonly channelOptions?: ChannelOptions;
  /** mTLS on the KvTransfer channels and the data port (the cluster's certificates); plaintext without. */
  readonly tls?: TlsMaterial;
}

export interface SendRequest {
  readonly peer: TransferPeer;
  readonly blocks: readonly KvBlock[];
  readonly meta?: TransferMeta;
  /** 'auto' (default): the receiver's preferred transport among those usable from here. */
  readonly transport?: 'auto' | TransportKind;
  /** Default: 32 random hex chars. Letters, digits, '_' and '-', at most 64. */
  readonly transferId?: string;
  readonly signal?: AbortSignal;
  /** From now until the receiver must have admitted the transfer (ms). */
  readonly deadlineMs?: number;
}

/** Blocks to offer at this sender's data port, for a receiver told of them out of band to pull. */
export interface OfferRequest {
  readonly blocks: readonly KvBlock[];
  /** Only a connection from this host may pull them (the host that asked for them); any, without. */
  readonly peerHost?: string;
  /** The receiver's token, when it asked for the blocks under it already (a pipelined pull); default: a fresh one. */
  readonly token?: Uint8Array;
  readonly signal?: AbortSignal;
  /** From now until the receiver must have admitted them (ms, default defaultDeadlineMs). */
  readonly deadlineMs?: number;
}

/** What a receiver needs to pull an offer (TransferReceiver.pull), and how it ends. */
export interface PullableOffer {
  /** The data port to pull from (host:port). */
  readonly source: string;
  /** The token the pull request names. */
  readonly token: Uint8Array;
  readonly blocks: number;
  readonly bytes: number;
  /**
   * Resolves once the receiver said, on the data connection, that it admitted every block; rejects with a
   * TransferError if the pull fails, does not come before the deadline, or its connection closes before
   * that word (a receiver that found a bad checksum closes it). The offer is withdrawn either way.
   */
  readonly done: Promise<void>;
}

export class TransferSender {
  private readonly clients = new Map<string, Client>();
  private readonly adverts = new Map<string, { readonly at: number; readonly ad: TransferAdvertisement }>();
  private readonly methods: KvTransferMethods;
  private source: Promise<TcpSource> | null = null;
  private closed = false;
  private swept = false;

  constructor(private readonly opts: TransferSenderOptions = {}) {
    this.methods = kvTransferService();
  }

  /** Binds the tcp data port now (so that a taken port fails at start-up); resolves with its address. */
  async listen(): Promise<string> {
    return (await this.tcpSource()).address;
  }

  /** Sends the blocks; resolves once the receiver admitted all of them. Rejects with a TransferError. */
  async send(req: SendRequest): Promise<TransferReceipt> {
    const started = performance.now();
    const transferId = req.transferId ?? randomBytes(16).toString('hex');
    const totalBytes = validate(req, transferId);
    const deadlineMs = req.deadlineMs ?? this.opts.defaultDeadlineMs ?? 30_000;
    const deadlineAt = Date.now() + deadlineMs;
    const ctl = new AbortController();
    const timer = setTimeout(
      () => ctl.abort(new TransferError('DEADLINE_EXCEEDED', `transfer ${transferId} not admitted within ${deadlineMs} ms`)),
      deadlineMs,
    );
    const onAbort = (): void => ctl.abort(new TransferError('ABORTED', `transfer ${transferId} aborted by the sender`));
    req.signal?.addEventListener('abort', onAbort, { once: true });
    if (req.signal?.aborted) onAbort();
    const address = req.peer.grpcAddress;
    try {
      ctl.signal.throwIfAborted();
      const ad = req.peer.advertisement ?? (await this.describe(address, { signal: ctl.signal, deadlineAt }));
      const transport = await this.chooseTransport(ad, req.transport ?? 'auto');
      const admitted = await runSendSession(
        { transferId, transport, blocks: req.blocks, meta: req.meta ?? {}, totalBytes, deadlineAt, ctl },
        {
          client: this.client(address),
          methods: this.methods,
          source: () => this.tcpSource(),
          shm: transport === 'shm' ? await probeShmSite(this.opts.shmBase) : null,
          grpcChunkBytes: Math.min(this.opts.grpcChunkBytes ?? DEFAULT_CHUNK_BYTES, MAX_MESSAGE_BYTES / 2),
        },
      );
      return {
        transferId,
        transport,
        blocks: req.blocks.length,
        bytes: admitted.bytes,
        elapsedMs: performance.now() - started,
      };
    } catch (e) {
      const err = ctl.signal.aborted
        ? reasonOf(ctl.signal)
        : e instanceof TransferError
          ? e
          : new TransferError('PROTOCOL', String(e), { cause: e });
      if (err.code === 'UNAVAILABLE' || err.code === 'CONNECTION_LOST') this.adverts.delete(address);
      throw err;
    } finally {
      clearTimeout(timer);
      req.signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Offers blocks at the data port without a Transfer call: whoever asked for them is told (out of band)
   * the source and token, and pulls them as a tcp transfer (TransferReceiver.pull); its word on the data
   * connection settles `done`. Rejects with a TransferError (INVALID_ARGUMENT, UNAVAILABLE) if it cannot offer.
   */
  async offer(req: OfferRequest): Promise<PullableOffer> {
    const bytes = validateBlocks(req.blocks);
    const deadlineMs = req.deadlineMs ?? this.opts.defaultDeadlineMs ?? 30_000;
    const source = await this.tcpSource();
    if (req.token !== undefined && req.token.byteLength !== TOKEN_BYTES) throw bad(`a token of ${req.token.byteLength} bytes`);
    const ctl = new AbortController();
    const timer = setTimeout(
      () =>
        ctl.abort(
          new TransferError('DEADLINE_EXCEEDED', `offer of ${req.blocks.length} blocks not pulled and admitted within ${deadlineMs} ms`),
        ),
      deadlineMs,
    );
    const onAbort = (): void => ctl.abort(new TransferError('ABORTED', 'offer aborted by the sender'));
    req.signal?.addEventListener('abort', onAbort, { once: true });
    if (req.signal?.aborted) onAbort();
    let offer: TcpOffer;
    try {
      offer = source.offer(req.blocks, ctl.signal, { peerHost: req.peerHost, token: req.token });
    } catch (e) {
      clearTimeout(timer);
      req.signal?.removeEventListener('abort', onAbort);
      throw e;
    }
    const done = raceSignal(
      offer.written.then(() =>
        Promise.race([
          offer.admitted,
          offer.lost.then((e) => {
            throw e;
          }),
        ]),
      ),
      ctl.signal,
    ).finally(() => {
      clearTimeout(timer);
      req.signal?.removeEventListener('abort', onAbort);
      offer.withdraw();
    });
    done.catch(() => undefined); // a caller that does not wait for the outcome need not hear of it
    return { source: source.address, token: offer.token, blocks: req.blocks.length, bytes, done };
  }

  /** The receiver's advertisement, over gRPC; cached for advertisementTtlMs. */
  async describe(grpcAddress: string, opts: { signal?: AbortSignal; deadlineAt?: number } = {}): Promise<TransferAdvertisement> {
    const cached = this.adverts.get(grpcAddress);
    const ttl = this.opts.advertisementTtlMs ?? 30_000;
    if (cached !== undefined && performance.now() - cached.at < ttl) return cached.ad;
    const m = this.methods.Describe;
    const msg = await new Promise<TransferAdvertisementMsg>((resolve, reject) => {
      const call = this.client(grpcAddress).makeUnaryRequest(
        m.path,
        m.requestSerialize,
        m.responseDeserialize,
        {},
        { deadline: opts.deadlineAt ?? Date.now() + 5_000 },
        (e: ServiceError | null, v?: TransferAdvertisementMsg) => {
          opts.signal?.removeEventListener('abort', onAbort);
          if (e !== null || v === undefined) {
            const err = e === null ? new TransferError('PROTOCOL', 'empty Describe response') : fromGrpcError(e);
            reject(err.code === 'CONNECTION_LOST' ? new TransferError('UNAVAILABLE', err.message, { cause: e }) : err);
          } else resolve(v);
        },
      );
      const onAbort = (): void => call.cancel();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
    });
    const ad: TransferAdvertisement = {
      protocolVersion: msg.protocol_version,
      transports: msg.transports.filter(isTransportKind),
      shmHostId: msg.shm_host_id,
    };
    this.adverts.set(grpcAddress, { at: performance.now(), ad });
    return ad;
  }

  /** The transport a send to this receiver would use. */
  async chooseTransport(ad: TransferAdvertisement, requested: 'auto' | TransportKind): Promise<TransportKind> {
    const usable = async (t: TransportKind): Promise<boolean> => {
      if (!ad.transports.includes(t)) return false;
      if (t === 'shm') {
        const site: ShmSite | null = ad.shmHostId === '' ? null : await probeShmSite(this.opts.shmBase);
        if (site !== null && !this.swept) {
          this.swept = true; // segments of senders that died on this host, once per sender
          void sweepStaleSegments(site.dir);
        }
        return site !== null && site.hostId === ad.shmHostId;
      }
      return true;
    };
    if (requested !== 'auto') {
      if (await usable(requested)) return requested;
      throw new TransferError('UNAVAILABLE', `transport ${requested} is not usable with this receiver`);
    }
    for (const t of ad.transports) if (await usable(t)) return t;
    throw new TransferError('UNAVAILABLE', `no usable transport among [${ad.transports.join(', ')}]`);
  }

  /** Closes gRPC channels and the data port; sends in flight fail. */
  close(): void {
    this.closed = true;
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
    void this.source?.then(
      (s) => s.close(),
      () => undefined,
    );
  }

  private tcpSource(): Promise<TcpSource> {
    if (this.closed) return Promise.reject(new TransferError('UNAVAILABLE', 'sender closed'));
    if (this.source === null) {
      const p = TcpSource.listen({ ...this.opts.tcp, tls: this.opts.tls });
      this.source = p;
      // A failed bind is retried by the next send rather than remembered.
      p.catch(() => {
        if (this.source === p) this.source = null;
      });
    }
    return this.source;
  }

  private client(address: string): Client {
    let c = this.clients.get(address);
    if (c === undefined) {
      c = new Client(address, channelCredentials(this.opts.tls), {
        ...TRANSFER_GRPC_OPTIONS,
        ...tlsChannelOptions(this.opts.tls),
        ...this.opts.channelOptions,
      });
      this.clients.set(address, c);
    }
    return c;
  }
}

const bad = (why: string): TransferError => new TransferError('INVALID_ARGUMENT', why);

/** Checks a request at the edge; returns its total bytes. */
function validate(req: SendRequest, transferId: string): number {
  if (!TRANSFER_ID_PATTERN.test(transferId)) throw bad(`bad transfer id ${JSON.stringify(transferId)}`);
  if (req.transport !== undefined && req.transport !== 'auto' && !isTransportKind(req.transport)) {
    throw bad(`unknown transport ${JSON.stringify(req.transport)}`);
  }
  const total = validateBlocks(req.blocks);
  for (const [k, v] of Object.entries(req.meta ?? {})) {
    if (typeof v !== 'string') throw bad(`meta ${k} is not a string`);
  }
  return total;
}

/** Checks the blocks to send; returns their total bytes. */
function validateBlocks(blocks: readonly KvBlock[]): number {
  if (blocks.length === 0) throw bad('no blocks to send');
  let total = 0;
  for (const b of blocks) {
    if (!BLOCK_HASH_PATTERN.test(b.hash)) throw bad(`bad block hash ${JSON.stringify(b.hash)}`);
    if (!(b.data instanceof Uint8Array) || b.data.byteLength === 0) throw bad(`block ${b.hash} has no bytes`);
    if (b.data.byteLength > 0xffff_ffff) throw bad(`block ${b.hash} is over 4 GiB`);
    total += b.data.byteLength;
  }
  return total;
}
