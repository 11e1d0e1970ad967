// One transfer on the receiving side: Begin → (bytes over the chosen transport) → Commit → verify →
// admit → Admitted; for tcp, every block pulled and verified stands in for Commit. Any failure, a
// cancelled call or the deadline discards everything received; the application only ever sees a whole,
// verified transfer. The session answers through a SessionLink: the Transfer call that carried Begin, or,
// for a tcp transfer announced out of band (a kv-store's Get reply names its offer), whoever asked this
// receiver to pull it.
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { peerHost } from '@pdserve/rpc';
import { BlockAssembly } from './assembly';
import { TransferError, asTransferError, toGrpcStatus } from './errors';
import { ingestChunks } from './grpc-transport';
import type { ShmSite } from './shm-site';
import type { SlabPool } from './slab-pool';
import { isSegmentPath, readSegment, removeSegment } from './shm-transport';
import { TOKEN_BYTES } from './frame-codec';
import type { PreparedPull, TcpPullPool } from './tcp-pull';
import { PROTOCOL_VERSION, isTransportKind, type IncomingTransfer, type KvBlock, type TransferOffer, type TransportKind } from './types';
import { unpackHashes, type Begin, type BlockDescriptor, type Commit, type TransferDown, type TransferUp } from './wire';

export interface ReceiverLimits {
  /** Blocks in one transfer. */
  readonly maxBlocks: number;
  /** Bytes in one block. */
  readonly maxBlockBytes: number;
  /** Bytes in one transfer. */
  readonly maxTransferBytes: number;
  /** Bytes of all transfers in flight at once; Begin beyond it is refused with RESOURCE_EXHAUSTED. */
  readonly maxPendingBytes: number;
  /** Bytes in flight from one peer (by its address), so that one sender cannot take the whole budget. */
  readonly maxPendingBytesPerPeer: number;
  /** Transfers in flight at once. */
  readonly maxPendingTransfers: number;
  /** Longest a transfer may take (ms), whatever deadline the sender set. */
  readonly maxTransferMs: number;
}

export const DEFAULT_RECEIVER_LIMITS: ReceiverLimits = {
  maxBlocks: 65_536,
  maxBlockBytes: 64 * 1024 * 1024,
  maxTransferBytes: 1024 * 1024 * 1024,
  maxPendingBytes: 2 * 1024 * 1024 * 1024,
  maxPendingBytesPerPeer: 1024 * 1024 * 1024,
  maxPendingTransfers: 256,
  maxTransferMs: 120_000,
};

export const TRANSFER_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** What a session needs from the receiver that owns it. */
export interface SessionHost {
  readonly limits: ReceiverLimits;
  readonly transports: readonly TransportKind[];
  /** Connections to senders' data ports, for tcp transfers. */
  readonly pull: TcpPullPool;
  readonly shm: ShmSite | null;
  readonly slabs: SlabPool;
  /** Aborts when the receiver closes. */
  readonly closing: AbortSignal;
  /** Reserves room for a transfer from `peer` (its host), or says why not. */
  reserve(transferId: string, bytes: number, peer: string): TransferError | null;
  unreserve(transferId: string, bytes: number): void;
  /** Whether a tcp transfer may be pulled from this data port (a registered peer's); absent: any. */
  allowSource?(address: string): boolean | Promise<boolean>;
  /** Where the application wants the blocks (its own buffers), or undefined for a slab; now or later. */
  place(offer: TransferOffer): Uint8Array[] | undefined | Promise<Uint8Array[] | undefined>;
  /** Each block as soon as it is whole and verified (see TransferReceiverOptions.onBlock). */
  readonly verified?: (transferId: string, index: number, block: KvBlock) => void;
  admit(t: IncomingTransfer): Promise<void>;
  discarded(transferId: string, error: TransferError): void;
  /** The session is over (admitted or discarded). */
  ended(session: ReceiveSession): void;
}

/** A transfer in flight, for debugging and metrics. */
export interface TransferProgress {
  readonly transferId: string;
  readonly transport: TransportKind;
  readonly blocks: number;
  readonly verifiedBlocks: number;
  readonly bytes: number;
}

type Phase = 'begin' | 'placing' | 'data' | 'commit' | 'done';

/** Where a session's answers go, and what it knows of its sender. */
export interface SessionLink {
  /** The sender's host as this receiver sees it (budgets per peer, TransferOffer.peer). */
  readonly peer: string;
  /** The sender's deadline (ms since the epoch; Infinity: none). */
  readonly deadlineAt: number;
  /** tcp: the data connection that asked for this transfer already (TransferReceiver.prepare). */
  readonly prepared?: PreparedPull;
  /** Begin accepted: the bytes may come (a grpc or shm sender waits for it before Commit). */
  ready(): void;
  /**
   * Every block admitted by the application. `tellSource` says so on the tcp data connection the blocks
   * came over (a no-op for other transports); the link calls it when it suits.
   */
  admitted(bytes: number, tellSource: () => void): void;
  /** The transfer failed; `notify`: the sender is still there to hear why. */
  failed(error: TransferError, notify: boolean): void;
}

/** The link of a session that came as a Transfer call: its messages in, its answers out on the call. */
export function callLink(call: ServerDuplexStream<TransferUp, TransferDown>): SessionLink {
  return {
    peer: peerHost(call.getPeer()),
    deadlineAt: deadlineMs(call.getDeadline()),
    ready: () => call.write({ kind: 'ready', ready: {} }),
    admitted: (bytes, tellSource) => {
      tellSource(); // first: the sender's quickest way to hear it
      call.write({ kind: 'admitted', admitted: { bytes } });
      call.end();
    },
    failed: (error, notify) => {
      if (notify && !call.cancelled) {
        const s = toGrpcStatus(error);
        call.emit('error', Object.assign(new Error(s.details), s));
      }
    },
  };
}

/** Runs a Transfer call as a session: its messages in, the sender's end and cancellation as failures. */
export function serveCall(call: ServerDuplexStream<TransferUp, TransferDown>, host: SessionHost): ReceiveSession {
  const link = callLink(call);
  const session = new ReceiveSession(link, host);
  call.on('data', (m: TransferUp) => session.receive(m));
  call.on('end', () => {
    // A dying sender's stream may end just before grpc-js reports the cancellation: let that win.
    setImmediate(() => session.senderEnded());
  });
  call.on('cancelled', () => {
    if (session.finished) return; // grpc-js reports a call it answered as cancelled too
    session.abort(
      Date.now() >= link.deadlineAt
        ? new TransferError('DEADLINE_EXCEEDED', `transfer ${session.transferId} exceeded the sender's deadline`)
        : new TransferError('CONNECTION_LOST', `sender of transfer ${session.transferId} cancelled or vanished`),
      false,
    );
  });
  return session;
}

export class ReceiveSession {
  private phase: Phase = 'begin';
  private begin: Begin | null = null;
  /** tcp: tells the sender, on the data connection its blocks came over, that they were admitted. */
  private tellAdmitted: (() => void) | null = null;
  /** Begin's blocks, unpacked. */
  private descriptors: readonly BlockDescriptor[] = [];
  private transport: TransportKind = 'grpc';
  private assembly: BlockAssembly | null = null;
  private shmPath: string | null = null;
  private reserved = 0;
  /** Messages that arrived while the application was still placing the blocks (grpc chunks), in order. */
  private held: TransferUp[] = [];
  private readonly ctl = new AbortController();
  private readonly timer: NodeJS.Timeout;
  private readonly onClosing = (): void => this.fail(new TransferError('UNAVAILABLE', 'receiver closed'));

  constructor(
    private readonly link: SessionLink,
    private readonly host: SessionHost,
  ) {
    // The sender's deadline, capped: a receiver never holds a transfer longer than maxTransferMs.
    const deadlineAt = Math.min(link.deadlineAt, Date.now() + host.limits.maxTransferMs);
    this.timer = setTimeout(
      () => this.fail(new TransferError('DEADLINE_EXCEEDED', `transfer ${this.id} not admitted before its deadline`)),
      Math.max(0, deadlineAt - Date.now()),
    );
    host.closing.addEventListener('abort', this.onClosing);
    if (host.closing.aborted) this.onClosing();
  }

  get finished(): boolean {
    return this.phase === 'done';
  }

  get transferId(): string {
    return this.id;
  }

  /** A message from the sender (Begin first). */
  receive(m: TransferUp): void {
    this.onMessage(m);
  }

  /** The sender closed its side: before Commit (or, tcp, before every block is in) that fails the transfer. */
  senderEnded(): void {
    if (this.phase === 'begin' || this.phase === 'placing' || this.phase === 'data') {
      this.fail(new TransferError('PROTOCOL', 'sender closed the stream before Commit'));
    }
  }

  /** Discards the transfer (cancelled, aborted by whoever asked for it); `notify`: tell the sender. */
  abort(error: TransferError, notify = true): void {
    this.fail(error, notify);
  }

  /** Null before Begin. */
  progress(): TransferProgress | null {
    const b = this.begin;
    const a = this.assembly;
    if (b === null || a === null) return null;
    return {
      transferId: b.transfer_id,
      transport: this.transport,
      blocks: a.blockCount,
      verifiedBlocks: a.verifiedBlocks,
      bytes: a.totalBytes,
    };
  }

  private get id(): string {
    return this.begin?.transfer_id ?? '(before Begin)';
  }

  private onMessage(m: TransferUp): void {
    try {
      if (m.kind === 'begin' && this.phase === 'begin') this.onBegin(m.begin);
      else if (this.phase === 'placing') this.held.push(m);
      else if (m.kind === 'chunks' && this.phase === 'data' && this.transport === 'grpc') {
        ingestChunks(this.assembly as BlockAssembly, m.chunks);
      } else if (m.kind === 'commit' && this.phase === 'data' && this.transport !== 'tcp') {
        this.phase = 'commit';
        void this.onCommit(m.commit);
      } else if (this.phase !== 'done') {
        throw new TransferError('PROTOCOL', `unexpected ${m.kind} message in phase ${this.phase}`);
      }
    } catch (e) {
      this.fail(asTransferError(e, 'PROTOCOL'));
    }
  }

  private onBegin(b: Begin): void {
    this.begin = b;
    this.transport = this.validate(b);
    const blocks = this.descriptors;
    const peer = this.link.peer;
    const refusal = this.host.reserve(b.transfer_id, b.total_bytes, peer);
    if (refusal !== null) throw refusal;
    this.reserved = b.total_bytes;
    const refused = (e: unknown): TransferError => new TransferError('REFUSED', e instanceof Error ? e.message : String(e), { cause: e });
    let placed: Uint8Array[] | undefined | Promise<Uint8Array[] | undefined>;
    try {
      placed = this.host.place({ transferId: b.transfer_id, meta: b.meta, blocks, peer, signal: this.ctl.signal });
    } catch (e) {
      throw refused(e);
    }
    if (!(placed instanceof Promise)) {
      this.startData(b, placed);
      return;
    }
    // The application decides later where the blocks go: nothing is pulled meanwhile, and what the sender
    // streams (grpc chunks) waits in order.
    this.phase = 'placing';
    placed.then(
      (where) => {
        if (this.phase !== 'placing') return; // failed meanwhile (cancelled, deadline, receiver closed)
        try {
          this.startData(b, where);
        } catch (e) {
          this.fail(asTransferError(e, 'REFUSED'));
          return;
        }
        const held = this.held;
        this.held = [];
        for (const m of held) this.onMessage(m);
      },
      (e: unknown) => this.fail(refused(e)),
    );
  }

  private startData(b: Begin, placed: Uint8Array[] | undefined): void {
    const verified = this.host.verified;
    const assembly = new BlockAssembly(
      this.descriptors,
      this.host.slabs,
      placed,
      verified === undefined ? undefined : (index, block) => verified(b.transfer_id, index, block),
    );
    this.assembly = assembly;
    this.phase = 'data';
    this.link.ready();
    if (this.transport === 'tcp') {
      // Pull the blocks from the sender's data port, if it is a registered peer's (never an address a
      // caller made up: that would make this receiver dial anywhere); all of them verified is the commit.
      const source = b.tcp_source;
      Promise.resolve(this.host.allowSource?.(source) ?? true)
        .then((allowed) => {
          if (!allowed) throw new TransferError('REFUSED', `data port ${source} is not a registered peer's`);
          if (this.phase !== 'data') throw new TransferError('ABORTED', 'transfer ended before its pull');
          return this.host.pull.pull(source, b.tcp_token, assembly, this.ctl.signal, this.link.prepared);
        })
        .then(
          (tellAdmitted) => {
            if (this.phase !== 'data') return;
            this.phase = 'commit';
            this.tellAdmitted = tellAdmitted;
            void this.admit(assembly);
          },
          (e: unknown) => this.fail(asTransferError(e, 'CONNECTION_LOST')),
        );
    }
  }

  /** Receive memory taken so far (it grows as the bytes arrive). */
  get allocatedBytes(): number {
    return this.assembly?.allocatedBytes ?? 0;
  }

  private validate(b: Begin): TransportKind {
    const bad = (why: string): TransferError => new TransferError('INVALID_ARGUMENT', why);
    const l = this.host.limits;
    if (b.protocol_version !== PROTOCOL_VERSION) {
      throw bad(`protocol version ${b.protocol_version}, this receiver speaks ${PROTOCOL_VERSION}`);
    }
    if (!TRANSFER_ID_PATTERN.test(b.transfer_id)) throw bad(`bad transfer id ${JSON.stringify(b.transfer_id)}`);
    const t = b.transport;
    if (!isTransportKind(t) || !this.host.transports.includes(t)) {
      throw new TransferError('UNAVAILABLE', `transport ${JSON.stringify(t)} not offered by this receiver`);
    }
    const count = b.block_lengths.length;
    if (count === 0 || count > l.maxBlocks) throw bad(`${count} blocks (limit ${l.maxBlocks})`);
    const hashes = unpackHashes(b.block_hashes);
    if (hashes === undefined || hashes.length !== count) {
      throw bad(`${b.block_hashes.byteLength} bytes of block hashes for ${count} blocks (8 bytes each)`);
    }
    let total = 0;
    for (const length of b.block_lengths) {
      if (length <= 0 || length > l.maxBlockBytes) throw bad(`block of ${length} bytes (limit ${l.maxBlockBytes})`);
      total += length;
    }
    this.descriptors = hashes.map((hash, i) => ({ hash, length: b.block_lengths[i] as number }));
    if (total !== b.total_bytes) throw bad(`blocks sum to ${total} bytes, Begin says ${b.total_bytes}`);
    if (total > l.maxTransferBytes) throw bad(`transfer of ${total} bytes (limit ${l.maxTransferBytes})`);
    if (t === 'tcp' && (b.tcp_source === '' || b.tcp_token.byteLength !== TOKEN_BYTES)) {
      throw bad('a tcp transfer names no data port and token to pull from');
    }
    return t;
  }

  private async onCommit(c: Commit): Promise<void> {
    try {
      const a = this.assembly as BlockAssembly;
      if (c.block_count !== a.blockCount) {
        throw new TransferError('PROTOCOL', `Commit counts ${c.block_count} blocks, Begin announced ${a.blockCount}`);
      }
      if (this.transport === 'shm') await this.readShm(c, a);
      else if (!a.complete) throw new TransferError('PROTOCOL', `Commit after ${a.verifiedBlocks} of ${a.blockCount} blocks`);
      if (this.ctl.signal.aborted) return;
    } catch (e) {
      this.fail(asTransferError(e, 'PROTOCOL'));
      return;
    }
    await this.admit(this.assembly as BlockAssembly);
  }

  /** Every block is in, verified: the application takes the transfer, and the sender hears so. */
  private async admit(a: BlockAssembly): Promise<void> {
    try {
      const b = this.begin as Begin;
      let retained = false;
      const incoming: IncomingTransfer = {
        transferId: b.transfer_id,
        transport: this.transport,
        meta: b.meta,
        blocks: a.blocks(),
        bytes: a.totalBytes,
        signal: this.ctl.signal,
        retain: () => {
          retained = true;
        },
      };
      try {
        await this.host.admit(incoming);
      } catch (e) {
        throw new TransferError('REFUSED', e instanceof Error ? e.message : String(e), { cause: e });
      } finally {
        // Every byte is in and no I/O targets the slab any more: reuse it unless the app kept it.
        if (!retained) a.recycle();
      }
      if (this.phase === 'done') return; // cancelled while the application admitted; it saw the signal
      this.phase = 'done';
      this.cleanup();
      this.link.admitted(a.totalBytes, this.tellAdmitted ?? (() => undefined));
    } catch (e) {
      this.fail(asTransferError(e, 'PROTOCOL'));
    }
  }

  private async readShm(c: Commit, a: BlockAssembly): Promise<void> {
    const seg = c.shm;
    const site = this.host.shm;
    if (seg === null || site === null || !isSegmentPath(site.dir, seg.path)) {
      throw new TransferError('PROTOCOL', "shm Commit without a segment in this receiver's shm directory");
    }
    this.shmPath = seg.path;
    if (seg.size !== a.totalBytes || seg.checksums.length !== a.blockCount) {
      throw new TransferError('PROTOCOL', `shm segment of ${seg.size} bytes / ${seg.checksums.length} checksums does not match Begin`);
    }
    const buffers = this.descriptors.map((_, i) => a.view(i));
    await readSegment(seg.path, buffers, this.ctl.signal);
    await removeSegment(seg.path);
    this.shmPath = null;
    this.ctl.signal.throwIfAborted();
    buffers.forEach((buf, i) => a.acceptWhole(i, buf, seg.checksums[i] as number));
  }

  /** Discards the transfer; `notify` ends the call with the error unless the sender is gone. */
  private fail(error: TransferError, notify = true): void {
    if (this.phase === 'done') return;
    this.phase = 'done';
    this.held = [];
    this.ctl.abort(error);
    this.cleanup();
    this.assembly?.discard();
    if (this.shmPath !== null) void removeSegment(this.shmPath);
    this.shmPath = null;
    this.host.discarded(this.begin?.transfer_id ?? '', error);
    this.link.failed(error, notify);
  }

  private cleanup(): void {
    clearTimeout(this.timer);
    this.host.closing.removeEventListener('abort', this.onClosing);
    if (this.reserved > 0) this.host.unreserve(this.id, this.reserved);
    this.reserved = 0;
    this.host.ended(this);
  }
}

function deadlineMs(d: Date | number): number {
  const ms = d instanceof Date ? d.getTime() : d;
  return Number.isFinite(ms) ? ms : Infinity;
}
