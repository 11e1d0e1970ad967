// The receiving end of the transfer engine: the KvTransfer gRPC service (added to the owner's gRPC
// server, or served on its own), the connections it pulls tcp transfers over, the shm site, and the
// limits on what may be in flight. The application sees a transfer only through onTransfer, whole and verified.
import {
  Server,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServiceDefinition,
  type UntypedServiceImplementation,
  type sendUnaryData,
} from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { serverCredentials, type TlsMaterial } from '@pdserve/rpc';
import { TransferError } from './errors';
import { TOKEN_BYTES } from './frame-codec';
import { TRANSFER_GRPC_OPTIONS, kvTransferService } from './proto';
import {
  DEFAULT_RECEIVER_LIMITS,
  ReceiveSession,
  serveCall,
  type ReceiverLimits,
  type SessionHost,
  type TransferProgress,
} from './receive-session';
import { probeShmSite, type ShmSite } from './shm-site';
import { sweepStaleSegments } from './shm-transport';
import { SlabPool } from './slab-pool';
import { TcpPullPool, splitHostPort, type PreparedPull, type TcpPullOptions } from './tcp-pull';
import {
  PROTOCOL_VERSION,
  type IncomingTransfer,
  type KvBlock,
  type TransferAdvertisement,
  type TransferMeta,
  type TransferOffer,
  type TransportKind,
} from './types';
import { packHashes, type DescribeRequest, type TransferAdvertisementMsg, type TransferDown, type TransferUp } from './wire';

export interface TransferReceiverOptions {
  /** The connections tcp transfers are pulled over (dialed to each sender's data port). */
  readonly tcp?: TcpPullOptions;
  /**
   * Transports to offer, in order of preference; unusable ones are dropped. Default tcp, shm, grpc: on
   * one host, loopback TCP moves KV 2-4x faster than the shm segment file (docs/benchmarks.md).
   */
  readonly transports?: readonly TransportKind[];
  /** Directory under which the shm site lives (default /dev/shm, else the temp dir). */
  readonly shmBase?: string;
  readonly limits?: Partial<ReceiverLimits>;
  /** Idle receive slabs kept for reuse (bytes, default 256 MiB; 0: every transfer gets fresh memory). */
  readonly slabPoolBytes?: number;
  /**
   * Admits a whole, verified transfer; the blocks' memory is reused once this settles unless
   * `t.retain()` was called. Throw to refuse it (the sender gets REFUSED).
   */
  readonly onTransfer: (t: IncomingTransfer) => Promise<void> | void;
  /**
   * Told of each transfer as its Begin arrives, before any byte is pulled: the "transfer begun" event.
   * Throw, or return a promise that rejects, to refuse it (the sender gets REFUSED); a promise holds the
   * transfer (nothing pulled, what the sender streams waits) until it settles. `place` follows.
   */
  readonly onBegin?: (offer: TransferOffer) => void | Promise<void>;
  /**
   * Names where an announced transfer's blocks should land: one buffer per block, of exactly its length,
   * owned by the application (a store reads the bytes straight into the buffers it will keep: no copy
   * out of a receive slab). Undefined: the receive slab. A promise: decided later (nothing is pulled, and
   * what the sender streams waits, until it settles; a rejection refuses the transfer). The buffers are
   * written until the transfer is admitted or discarded; after a discard the application must not reuse
   * them for anything another reader could see (an in-flight read may still land in them).
   */
  readonly place?: (offer: TransferOffer) => Uint8Array[] | undefined | Promise<Uint8Array[] | undefined>;
  /**
   * Told of each block as soon as it arrived whole and verified, before the transfer is admitted (and
   * while the rest arrive): the application can start on it (a store checks and files it). The bytes are
   * the transfer's, as onTransfer's are; the transfer may still fail after this (onDiscard follows). Throw
   * to refuse the transfer (the sender gets REFUSED).
   */
  readonly onBlock?: (transferId: string, index: number, block: KvBlock) => void;
  /** Told about every transfer discarded (for metrics and logs). */
  readonly onDiscard?: (transferId: string, error: TransferError) => void;
  /** Closes the receiver when aborted. */
  readonly signal?: AbortSignal;
  /** mTLS on the data connections it dials (and on serveGrpc's server); plaintext without. */
  readonly tls?: TlsMaterial;
  /**
   * Whether a tcp transfer may be pulled from this data port (host:port named in Begin): a service says
   * yes only for its registered peers' ports, so that no caller can make it dial an address of its choosing.
   * Absent: any (tests, tools).
   */
  readonly allowSource?: (address: string) => boolean | Promise<boolean>;
}

/**
 * A tcp transfer offered at a sender's data port (TransferSender.offer) and announced out of band, as a
 * kv-store's Get reply does: what its Begin would carry.
 */
export interface PullOffer {
  readonly transferId: string;
  /** The sender's data port (host:port). */
  readonly source: string;
  readonly token: Uint8Array;
  /** In the sender's order. */
  readonly blocks: readonly { readonly hash: string; readonly length: number }[];
  readonly meta?: TransferMeta;
  /** From now until the transfer must be admitted (ms; capped, as every transfer, by limits.maxTransferMs). */
  readonly deadlineMs?: number;
  /** Discards the transfer when aborted. */
  readonly signal?: AbortSignal;
  /** The data connection prepare() opened for it (a pipelined pull); otherwise one is taken now. */
  readonly prepared?: PreparedPull;
}

/** How often stale shm segments are swept (ms). */
const SHM_SWEEP_INTERVAL_MS = 60_000;

export class TransferReceiver {
  private readonly closing = new AbortController();
  private readonly inFlight = new Map<string, { readonly bytes: number; readonly peer: string }>();
  /** Bytes in flight by peer host. */
  private readonly byPeer = new Map<string, number>();
  private readonly sessions = new Set<ReceiveSession>();
  private pending = 0;
  private ownServer: Server | null = null;
  private readonly sweepTimer: NodeJS.Timeout | null;
  private readonly host: SessionHost;
  private readonly pullPool: TcpPullPool;

  private constructor(
    private readonly opts: TransferReceiverOptions,
    private readonly offered: readonly TransportKind[],
    private readonly shm: ShmSite | null,
  ) {
    const limits: ReceiverLimits = { ...DEFAULT_RECEIVER_LIMITS, ...opts.limits };
    // Every live session listens for the receiver closing, once, and stops listening when it ends: the count
    // follows the sessions in flight (bounded by the limits), not a leak.
    setMaxListeners(0, this.closing.signal);
    this.pullPool = new TcpPullPool({ ...opts.tcp, tls: opts.tls });
    this.host = {
      limits,
      transports: offered,
      pull: this.pullPool,
      shm,
      closing: this.closing.signal,
      slabs: new SlabPool(opts.slabPoolBytes ?? 256 * 1024 * 1024),
      reserve: (id, bytes, peer) => this.reserve(id, bytes, peer, limits),
      unreserve: (id) => {
        const r = this.inFlight.get(id);
        if (r === undefined) return;
        this.inFlight.delete(id);
        this.pending -= r.bytes;
        const left = (this.byPeer.get(r.peer) ?? 0) - r.bytes;
        if (left > 0) this.byPeer.set(r.peer, left);
        else this.byPeer.delete(r.peer);
      },
      allowSource: opts.allowSource,
      place: (offer) => {
        const begun = opts.onBegin?.(offer);
        return begun instanceof Promise ? begun.then(() => opts.place?.(offer)) : opts.place?.(offer);
      },
      verified: opts.onBlock,
      admit: async (t) => opts.onTransfer(t),
      discarded: (id, error) => opts.onDiscard?.(id, error),
      ended: (s) => this.sessions.delete(s),
    };
    this.sweepTimer = shm === null ? null : setInterval(() => void this.sweepShm(), SHM_SWEEP_INTERVAL_MS);
    this.sweepTimer?.unref();
    opts.signal?.addEventListener('abort', () => void this.close(), { once: true });
  }

  static async start(opts: TransferReceiverOptions): Promise<TransferReceiver> {
    const wanted = opts.transports ?? ['tcp', 'shm', 'grpc'];
    const shm = wanted.includes('shm') ? await probeShmSite(opts.shmBase) : null;
    const offered = wanted.filter((t) => (t === 'shm' ? shm !== null : true));
    const rx = new TransferReceiver(opts, offered, shm);
    if (shm !== null) await rx.sweepShm();
    return rx;
  }

  advertisement(): TransferAdvertisement {
    return {
      protocolVersion: PROTOCOL_VERSION,
      transports: this.offered,
      shmHostId: this.shm?.hostId ?? '',
    };
  }

  /** The KvTransfer service to add to the owner's gRPC server (built with TRANSFER_GRPC_OPTIONS). */
  grpcService(): { definition: ServiceDefinition; implementation: UntypedServiceImplementation } {
    const implementation: UntypedServiceImplementation = {
      Describe: (_call: ServerUnaryCall<DescribeRequest, TransferAdvertisementMsg>, done: sendUnaryData<TransferAdvertisementMsg>) => {
        const a = this.advertisement();
        done(null, {
          protocol_version: a.protocolVersion,
          transports: a.transports,
          shm_host_id: a.shmHostId,
        });
      },
      Transfer: (call: ServerDuplexStream<TransferUp, TransferDown>) => {
        const session = serveCall(call, this.host);
        if (!session.finished) this.sessions.add(session);
      },
    };
    return { definition: kvTransferService(), implementation };
  }

  /**
   * Pulls a tcp transfer announced out of band, as if its Begin had come on a Transfer call: the same limits
   * and budgets, source check (allowSource), onBegin and place, per-block checks (onBlock) and onTransfer;
   * the sender hears of the admission on the data connection. Resolves once admitted; rejects with a
   * TransferError (onDiscard is told too).
   */
  pull(offer: PullOffer): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => session.abort(new TransferError('ABORTED', `transfer ${offer.transferId} aborted`), false);
      const settle = (): void => {
        offer.signal?.removeEventListener('abort', onAbort);
        if (offer.prepared !== undefined) this.pullPool.cancel(offer.prepared); // not pulled (a refusal): let it go
      };
      const session = new ReceiveSession(
        {
          peer: splitHostPort(offer.source).host,
          deadlineAt: offer.deadlineMs === undefined ? Infinity : Date.now() + offer.deadlineMs,
          prepared: offer.prepared,
          ready: () => undefined,
          admitted: (_bytes, tellSource) => {
            settle();
            resolve();
            // The sender's word only ends its offer (a lease on its side): whoever waits for the blocks goes first.
            setImmediate(tellSource);
          },
          failed: (error) => {
            settle();
            reject(error);
          },
        },
        this.host,
      );
      if (session.finished) return;
      this.sessions.add(session);
      offer.signal?.addEventListener('abort', onAbort, { once: true });
      if (offer.signal?.aborted) onAbort();
      session.receive({
        kind: 'begin',
        begin: {
          protocol_version: PROTOCOL_VERSION,
          transfer_id: offer.transferId,
          transport: 'tcp',
          meta: offer.meta ?? {},
          total_bytes: offer.blocks.reduce((n, b) => n + b.length, 0),
          tcp_source: offer.source,
          tcp_token: offer.token,
          block_hashes: packHashes(offer.blocks.map((b) => b.hash)),
          block_lengths: offer.blocks.map((b) => b.length),
        },
      });
    });
  }

  /**
   * Asks a sender's data port for a transfer under `token` (default: a fresh one) before it is offered (a pipelined pull):
   * the caller names the token to whoever will offer the blocks (a kv-store's Get), which may then send them
   * at once, and gives the result to pull() — or to cancel(). Nothing is read before pull() knows the
   * blocks. `listed`: the sender lists them first, on the data connection (PreparedPull.list), so pull()
   * need not wait for another word. Only a data port allowSource accepts is dialed. Rejects with a TransferError.
   */
  async prepare(source: string, token: Uint8Array = randomBytes(TOKEN_BYTES), opts: { listed?: boolean } = {}): Promise<PreparedPull> {
    if (this.closing.signal.aborted) throw new TransferError('UNAVAILABLE', 'receiver closed');
    if (!this.offered.includes('tcp')) throw new TransferError('UNAVAILABLE', 'this receiver does not take tcp');
    if (!(await (this.opts.allowSource?.(source) ?? true))) {
      throw new TransferError('REFUSED', `data port ${source} is not a registered peer's`);
    }
    if (token.byteLength !== TOKEN_BYTES) throw new TransferError('INVALID_ARGUMENT', `a token of ${token.byteLength} bytes`);
    return this.pullPool.prepare(source, token, opts.listed === true ? this.host.limits.maxBlocks : undefined);
  }

  /** Drops a prepared pull that will not be pulled (the sender offered nothing); its connection is closed. */
  cancel(prepared: PreparedPull): void {
    this.pullPool.cancel(prepared);
  }

  /** Serves KvTransfer on a gRPC server of its own (tests, tools); resolves with its host:port. */
  async serveGrpc(host = '127.0.0.1', port = 0): Promise<string> {
    if (this.ownServer !== null) throw new Error('already serving gRPC');
    const server = new Server(TRANSFER_GRPC_OPTIONS);
    const { definition, implementation } = this.grpcService();
    server.addService(definition, implementation);
    const bound = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`${host}:${port}`, serverCredentials(this.opts.tls), (e, p) => (e ? reject(e) : resolve(p)));
    });
    this.ownServer = server;
    return `${host}:${bound}`;
  }

  /** The transfers in flight (past Begin), with how many blocks arrived verified. */
  progress(): TransferProgress[] {
    const out: TransferProgress[] = [];
    for (const s of this.sessions) {
      const p = s.progress();
      if (p !== null) out.push(p);
    }
    return out;
  }

  /** Transfers between Begin and their end. */
  get pendingTransfers(): number {
    return this.inFlight.size;
  }

  /** Bytes reserved by transfers in flight. */
  get pendingBytes(): number {
    return this.pending;
  }

  /** Removes shm segments left behind by dead or stuck senders; returns how many. */
  async sweepShm(): Promise<number> {
    return this.shm === null ? 0 : sweepStaleSegments(this.shm.dir);
  }

  /** Discards every transfer in flight and stops serving. */
  async close(): Promise<void> {
    if (this.closing.signal.aborted) return;
    this.closing.abort(new TransferError('UNAVAILABLE', 'receiver closed'));
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    const server = this.ownServer;
    this.ownServer = null;
    // Sessions have just ended their calls with UNAVAILABLE; let those statuses go out first.
    if (server !== null) await new Promise<void>((resolve) => setImmediate(resolve)).then(() => server.forceShutdown());
    this.pullPool.close();
  }

  /** Receive memory taken by the transfers in flight (it grows as their bytes arrive, up to pendingBytes). */
  get allocatedBytes(): number {
    let n = 0;
    for (const s of this.sessions) n += s.allocatedBytes;
    return n;
  }

  private reserve(id: string, bytes: number, peer: string, limits: ReceiverLimits): TransferError | null {
    if (this.closing.signal.aborted) return new TransferError('UNAVAILABLE', 'receiver is closing');
    if (this.inFlight.has(id)) return new TransferError('INVALID_ARGUMENT', `transfer ${id} is already in flight`);
    if (this.inFlight.size >= limits.maxPendingTransfers) {
      return new TransferError('RESOURCE_EXHAUSTED', `${this.inFlight.size} transfers in flight (limit ${limits.maxPendingTransfers})`);
    }
    if (this.pending + bytes > limits.maxPendingBytes) {
      return new TransferError(
        'RESOURCE_EXHAUSTED',
        `${this.pending} bytes in flight, ${bytes} more exceeds the limit of ${limits.maxPendingBytes}`,
      );
    }
    const fromPeer = this.byPeer.get(peer) ?? 0;
    if (fromPeer + bytes > limits.maxPendingBytesPerPeer) {
      return new TransferError(
        'RESOURCE_EXHAUSTED',
        `${fromPeer} bytes in flight from ${peer}, ${bytes} more exceeds its limit of ${limits.maxPendingBytesPerPeer}`,
      );
    }
    this.inFlight.set(id, { bytes, peer });
    this.byPeer.set(peer, fromPeer + bytes);
    this.pending += bytes;
    return null;
  }
}
