// One kv-store node on the network: the KvStore gRPC service over a KvStore core, the transfer engine's
// receiver (puts) and sender (gets) on the same gRPC server, registration in the registry (role kv-store),
// its stored/removed events on the KV event bus (tier 'store'), and the block directory kept in step.
import { randomBytes } from 'node:crypto';
import { Server, status, type ServerUnaryCall, type UntypedServiceImplementation, type sendUnaryData } from '@grpc/grpc-js';
import {
  KvEventPublisher,
  RegisteredPeers,
  hostsOf,
  type ControlPlane,
  type Logger,
  type Membership,
  type Registration,
} from '@pdserve/control-plane';
import { peerHost, plainHost, serverCredentials, type TlsMaterial } from '@pdserve/rpc';
import {
  TransferReceiver,
  TransferSender,
  isTransportKind,
  unpackHashes,
  type IncomingTransfer,
  type KvBlock,
  type TransferOffer,
  type TransportKind,
} from '@pdserve/transfer';
import type { BlockDirectory } from '../directory';
import { mirrorToDirectory, type DirectoryMirror } from '../directory-sync';
import { GRPC_STATUS, KvStoreError } from '../errors';
import type { BlockHash } from '../keys';
import type { KvStore } from '../store';
import type { KvStoreEvent, TierStats } from '../types';
import { KV_STORE_GRPC_OPTIONS, PUT_BEGIN_META, PUT_COMMIT_META, PUT_ID_META, PUT_TTL_META, kvStoreService } from './proto';
import { TIER_CODES } from './wire';
import type * as W from './wire';

export interface KvStoreServerOptions {
  /** Stable node id: registry key, directory node, KV event stream id. */
  readonly nodeId: string;
  readonly store: KvStore;
  readonly controlPlane: ControlPlane;
  readonly logger: Logger;
  /** Model id written in the registry record ('*': whatever the store accepts). */
  readonly model?: string;
  /** Records which node holds which block; kept in step with the store's events. */
  readonly directory?: BlockDirectory;
  /** Address the gRPC server binds; default 127.0.0.1. */
  readonly host?: string;
  readonly advertiseHost?: string;
  /** 0 picks a free port. */
  readonly grpcPort?: number;
  /** Port of the TCP data plane workers pull Get blocks from; 0 or undefined = any free port. */
  readonly dataPort?: number;
  readonly adminAddress?: string;
  /** Transports puts may arrive over, in preference order; default tcp, shm, grpc. */
  readonly transports?: readonly TransportKind[];
  /** Told about each block transfer (for metrics). */
  readonly onTransfer?: (direction: 'in' | 'out', bytes: number, seconds: number) => void;
  /** mTLS on its gRPC server, its transfer channels and data port; plaintext without. */
  readonly tls?: TlsMaterial;
}

/** Longest a Get's blocks may take to reach the caller, in ms. */
const GET_SEND_DEADLINE_MS = 30_000;

export class KvStoreServer {
  readonly incarnation = randomBytes(8).toString('hex');
  private readonly server = new Server(KV_STORE_GRPC_OPTIONS);
  private readonly sender: TransferSender;
  private readonly publisher: KvEventPublisher;
  private receiver: TransferReceiver | undefined;
  private registration: Registration | undefined;
  private membership: Membership | undefined;
  /** Who may put, remove, pin and get here, and where gets may go: registered services only. */
  private peers: RegisteredPeers | undefined;
  private mirror: DirectoryMirror | undefined;
  private readonly unsubscribe: () => void;
  private draining = false;
  private closed = false;
  /** Transfers carrying a put's blocks, by transfer id, until admitted or discarded. */
  private readonly putTransfers = new Map<string, PutTransfer>();
  private address = '';
  private refusedTransfers = 0;
  private blocksSent = 0;

  constructor(private readonly opts: KvStoreServerOptions) {
    this.publisher = new KvEventPublisher(opts.controlPlane.events, { worker: opts.nodeId, incarnation: this.incarnation });
    // Workers pull the blocks of a Get from this data port.
    this.sender = new TransferSender({
      tcp: { host: opts.host ?? '127.0.0.1', advertiseHost: opts.advertiseHost, port: opts.dataPort },
      tls: opts.tls,
    });
    // Published after the call that caused them has answered (a put's commit acknowledged first), in order.
    this.unsubscribe = opts.store.onEvent((e) => void setImmediate(() => this.closed || this.publish(e)));
  }

  get grpcAddress(): string {
    return this.address;
  }

  async start(): Promise<string> {
    const { opts } = this;
    const host = opts.host ?? '127.0.0.1';
    this.membership = await opts.controlPlane.registry.watch();
    const peers = new RegisteredPeers(this.membership);
    this.peers = peers;
    this.receiver = await TransferReceiver.start({
      transports: opts.transports,
      tls: opts.tls,
      allowSource: (address) => peers.isDataPort(address),
      // A put's blocks are read straight into the buffers the store keeps them in; a transfer with
      // put_begin begins its put first.
      place: (offer) => (opts.tls !== undefined ? this.place(offer) : this.fromMember(offer.peer).then(() => this.place(offer))),
      // Each block is checked and filed as soon as it is in, while the rest still arrive: the admission
      // then only commits.
      onBlock: (transferId, _index, block) => this.writeArrived(transferId, block),
      onTransfer: (t) => this.admitPut(t),
      // A transfer that began a put and then failed ends its put at once (not at its ttl).
      onDiscard: (transferId) => {
        const p = this.putTransfers.get(transferId);
        this.putTransfers.delete(transferId);
        if (p?.begun === true) opts.store.revokePut(p.putId);
      },
    });
    const dataAddress = await this.sender.listen(); // a taken --data-port fails here, not at the first Get
    const rx = this.receiver.grpcService();
    this.server.addService(rx.definition, rx.implementation);
    this.server.addService(kvStoreService(), this.handlers());
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`${host}:${opts.grpcPort ?? 0}`, serverCredentials(opts.tls), (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.address = `${opts.advertiseHost ?? host}:${port}`;
    if (opts.directory !== undefined) {
      // Blocks recovered from disk are recorded before the node is announced.
      await opts.directory.dropNode(opts.nodeId).catch(() => undefined);
      for (const e of opts.store.snapshot()) {
        await opts.directory
          .record(
            opts.nodeId,
            e.modelId,
            e.hashes.map((hash) => ({ hash, tier: e.tier })),
          )
          .catch((err: unknown) => opts.logger.warn({ err: String(err) }, 'kv-store: directory record failed'));
      }
      this.mirror = mirrorToDirectory(opts.store, opts.directory, opts.nodeId, opts.logger);
    }
    this.registration = await opts.controlPlane.registry.register({
      id: opts.nodeId,
      role: 'kv-store',
      grpcAddress: this.address,
      adminAddress: opts.adminAddress ?? '',
      model: opts.model ?? '*',
      capacity: { totalBlocks: 0, blockSize: 0, maxNumSeqs: 0 },
      transfer: this.receiver.advertisement(),
      dataAddress,
      incarnation: this.incarnation,
      startedAt: Date.now(),
    });
    return this.address;
  }

  /** Leaves the registry first (workers stop choosing it), then stops. */
  async drain(): Promise<void> {
    this.draining = true;
    await this.registration?.deregister().catch(() => undefined);
    await this.close();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe();
    this.mirror?.stop();
    await this.mirror?.flushed();
    this.publisher.close();
    await this.registration?.deregister().catch(() => undefined);
    this.server.forceShutdown();
    this.membership?.close();
    await this.receiver?.close();
    this.sender.close();
  }

  /**
   * Blocks that left a tier are re-derived from the store, so that a demotion (stored disk, removed memory)
   * nets out as still held. Stored ones are published as such: if one left since, its removal follows.
   */
  private publish(e: KvStoreEvent): void {
    if (e.kind === 'stored') {
      this.publisher.stored(e.hashes, 'store');
      return;
    }
    const held: BlockHash[] = [];
    const gone: BlockHash[] = [];
    const tiers: (string | undefined)[] = [];
    for (let i = 0; i < e.hashes.length; i += 512) tiers.push(...this.opts.store.exists(e.modelId, e.hashes.slice(i, i + 512)));
    e.hashes.forEach((h, i) => (tiers[i] === undefined ? gone : held).push(h));
    if (held.length > 0) this.publisher.stored(held, 'store');
    if (gone.length > 0) this.publisher.removed(gone, 'store');
  }

  /** Where a put's blocks go: into the put it names, or one it begins (put_begin). */
  private place(offer: TransferOffer): Uint8Array[] | undefined | Promise<Uint8Array[] | undefined> {
    const model = offer.meta[PUT_BEGIN_META];
    if (typeof model === 'string' && model !== '') return this.beginFromTransfer(offer, model);
    const putId = offer.meta[PUT_ID_META];
    if (typeof putId !== 'string' || putId === '') return undefined; // admitPut refuses it
    this.putTransfers.set(offer.transferId, { putId, begun: false });
    return this.opts.store.placement(putId, offer.blocks);
  }

  /**
   * Refuses a caller that is not a registered service. With mTLS the handshake already did (a certificate
   * from the cluster's CA is the identity); without, the caller's host must be a registered member's.
   */
  private async fromMember(host: string): Promise<void> {
    if (this.opts.tls !== undefined) return;
    if (!(await this.peers!.isMemberHost(host)))
      throw new KvStoreError('permission_denied', `${host} is not a service registered in this cluster`);
  }

  /** Begins the put a transfer with put_begin carries, as BeginPut would; then places its blocks. */
  private async beginFromTransfer(offer: TransferOffer, model: string): Promise<Uint8Array[] | undefined> {
    const { store } = this.opts;
    try {
      if (this.draining) throw new KvStoreError('unavailable', 'kv-store is draining');
      const ttl = Number(offer.meta[PUT_TTL_META] ?? '0');
      const begun = await store.beginPut(
        model,
        offer.blocks.map((b) => ({ hash: b.hash, size: b.length })),
        { ttlMs: ttl > 0 ? ttl : undefined },
      );
      if (offer.signal.aborted) {
        store.revokePut(begun.putId); // the transfer was discarded while the put began (eviction can take a while)
        throw new KvStoreError('unavailable', `transfer ${offer.transferId} ended before its put began`);
      }
      this.putTransfers.set(offer.transferId, { putId: begun.putId, begun: true });
      return store.placement(begun.putId, offer.blocks); // undefined (read elsewhere, copied) if it holds some already
    } catch (err) {
      this.refusedTransfers += 1;
      this.opts.logger.warn({ transferId: offer.transferId, err: String(err) }, 'kv-store: put transfer refused');
      throw withCode(err);
    }
  }

  /**
   * A put's block as it arrives: checked and kept (not readable before the commit); a bad one refuses the
   * transfer. The engine tells of every block of every transport here, so the admission finds them written.
   */
  private writeArrived(transferId: string, block: KvBlock): void {
    const p = this.putTransfers.get(transferId);
    if (p === undefined) return; // no put named: admitPut says so
    this.writeOrRefuse(transferId, p.putId, () => this.opts.store.writeBlock(p.putId, block.hash, block.data, block.checksum));
  }

  /** A put's transfer, every block in and written (writeArrived): admitted only for an open put, committed here if asked. */
  private admitPut(t: IncomingTransfer): void {
    const p = this.putTransfers.get(t.transferId);
    this.putTransfers.delete(t.transferId);
    const started = performance.now();
    this.writeOrRefuse(t.transferId, p?.putId, () => {
      if (p === undefined) throw new KvStoreError('invalid_argument', `transfer ${t.transferId} names no put_id`);
      if (t.meta[PUT_COMMIT_META] === '1') this.opts.store.commitPut(p.putId);
    });
    this.opts.onTransfer?.('in', t.bytes, (performance.now() - started) / 1000);
  }

  /** Runs a put's write or commit; on failure the put is revoked (a bad block spoils it all) and the transfer refused. */
  private writeOrRefuse(transferId: string, putId: string | undefined, write: () => void): void {
    try {
      write();
    } catch (err) {
      if (err instanceof KvStoreError && err.code !== 'not_found' && putId !== undefined) this.opts.store.revokePut(putId);
      this.refusedTransfers += 1;
      this.opts.logger.warn({ transferId, putId, err: String(err) }, 'kv-store: put transfer refused');
      throw withCode(err);
    }
  }

  /** Get: finds the blocks under a read lease and sends them to the sink, or (sink.pull) offers them to the caller to pull. */
  private async get(req: W.GetRequestMsg, signal: AbortSignal, caller: string): Promise<W.GetResponseMsg> {
    const { store } = this.opts;
    if (req.sink === null || req.sink.grpc_address === '')
      throw new KvStoreError('invalid_argument', 'get needs a sink (where to send the blocks)');
    const transport = req.sink.transport === '' ? 'auto' : req.sink.transport;
    if (transport !== 'auto' && !isTransportKind(transport))
      throw new KvStoreError('invalid_argument', `unknown transport ${JSON.stringify(transport)}`);
    const pull = req.sink.pull === true;
    if (pull && transport !== 'auto' && transport !== 'tcp')
      throw new KvStoreError('invalid_argument', `a pulled get goes over tcp, not ${transport}`);
    // Stored KV goes only to a registered worker of its model, never to an address a caller made up.
    const sink = req.sink.grpc_address;
    const worker = await this.peers!.member(sink, ['prefill', 'decode', 'mixed'], req.model_id);
    if (worker === undefined) {
      throw new KvStoreError('permission_denied', `sink ${sink} is not a registered worker of model ${req.model_id}`);
    }
    // Pulled, the blocks go to whoever holds the offer, so the caller must be that worker's host (and the
    // offer can be pulled from that host only): no other member can read KV by naming a worker as the sink.
    if (pull && !hostsOf(worker).map(plainHost).includes(plainHost(caller))) {
      throw new KvStoreError('permission_denied', `a pulled get for sink ${sink} must come from its host, not ${caller}`);
    }
    // The receiving transfer engine checks every block against the CRC sent with it: memory blocks are not
    // checked here too (one pass over the bytes, not two), unless that check failed (below, or `verify`).
    const hashes = unpackHashes(req.hashes);
    if (hashes === undefined) throw new KvStoreError('invalid_argument', `${req.hashes.byteLength} bytes of hashes (8 bytes per hash)`);
    const res = await store.get(req.model_id, hashes, {
      leaseMs: req.lease_ms === 0 ? undefined : req.lease_ms,
      verifyMemory: req.verify === true,
    });
    let leased = res.leaseId;
    try {
      const blocks: KvBlock[] = [];
      res.blocks.forEach((b, i) => b !== undefined && blocks.push({ hash: hashes[i]!, data: b.bytes, checksum: b.crc }));
      const tiers = Uint8Array.from(res.blocks, (b) => (b === undefined ? 0 : TIER_CODES.indexOf(b.tier)));
      const none: W.GetResponseMsg = {
        tiers,
        blocks: 0,
        bytes: 0,
        transport: '',
        tcp_source: '',
        tcp_token: new Uint8Array(0),
        block_lengths: [],
      };
      if (blocks.length === 0) return none;
      const started = performance.now();
      if (pull) {
        // No call to the worker: the reply is the offer, the worker's word on the data connection ends it.
        const token = req.sink.pull_token !== undefined && req.sink.pull_token.byteLength > 0 ? req.sink.pull_token : undefined;
        const offer = await this.sender
          .offer({ blocks, peerHost: caller, token, deadlineMs: GET_SEND_DEADLINE_MS })
          .catch((err: unknown) => {
            // A pull token that is no token, or one in use: the caller's mistake.
            if ((err as { code?: unknown }).code === 'INVALID_ARGUMENT') throw new KvStoreError('invalid_argument', (err as Error).message);
            throw err;
          });
        const leaseId = leased;
        leased = undefined; // released when the offer ends, not now
        offer.done
          .then(
            () => {
              this.blocksSent += blocks.length;
              this.opts.onTransfer?.('out', offer.bytes, (performance.now() - started) / 1000);
            },
            // A reader whose check failed closes the connection and gets again with `verify`.
            (err: unknown) => this.opts.logger.warn({ sink, err: String(err) }, 'kv-store: pulled get not admitted'),
          )
          .finally(() => leaseId !== undefined && store.releaseLease(leaseId));
        return {
          ...none,
          blocks: offer.blocks,
          bytes: offer.bytes,
          transport: 'tcp',
          tcp_source: offer.source,
          tcp_token: offer.token,
          block_lengths: blocks.map((b) => b.data.byteLength),
        };
      }
      const receipt = await this.sender
        .send({
          peer: { grpcAddress: req.sink.grpc_address },
          blocks,
          transferId: req.sink.transfer_id || undefined,
          transport,
          signal,
          deadlineMs: GET_SEND_DEADLINE_MS,
        })
        .catch((err: unknown) => {
          if ((err as { code?: unknown }).code !== 'CHECKSUM_MISMATCH') throw err;
          // The reader saw a block that does not match its CRC: drop whatever is corrupt here, so that the
          // reader's next get reports it missing, never serves it.
          const dropped = store.recheck(
            req.model_id,
            blocks.map((b) => b.hash),
          );
          throw new KvStoreError(
            'data_loss',
            `${(err as Error).message}; ${dropped.length} corrupt block(s) dropped from this store, get again`,
          );
        });
      this.blocksSent += blocks.length;
      this.opts.onTransfer?.('out', receipt.bytes, (performance.now() - started) / 1000);
      return { ...none, blocks: receipt.blocks, bytes: receipt.bytes, transport: receipt.transport };
    } finally {
      if (leased !== undefined) store.releaseLease(leased);
    }
  }

  private snapshot(): W.SnapshotResponseMsg {
    // Flushing first makes `seq` cover every event up to this snapshot.
    this.publisher.flush();
    const groups = this.opts.store.snapshot().map((e) => ({ model_id: e.modelId, tier: e.tier, hashes: [...e.hashes] }));
    return { node: this.opts.nodeId, incarnation: this.incarnation, seq: this.publisher.seq, groups };
  }

  private stats(): W.StoreStatsResponseMsg {
    const s = this.opts.store.stats();
    return {
      memory: tierMsg(s.memory),
      disk: tierMsg(s.disk),
      active_puts: s.puts.active,
      committed_puts: s.puts.committed,
      revoked_puts: s.puts.revoked,
      reclaimed_puts: s.puts.reclaimed,
      active_leases: s.activeLeases,
      active_pins: s.activePins,
      demotions: s.demotions,
      promotions: s.promotions,
      refused_transfers: this.refusedTransfers,
      blocks_sent: this.blocksSent,
    };
  }

  private handlers(): UntypedServiceImplementation {
    const { store } = this.opts;
    const ttl = (ms: number): number | undefined => (ms === 0 ? undefined : ms);
    const h = {
      BeginPut: async (r: W.BeginPutRequestMsg): Promise<W.BeginPutResponseMsg> => {
        if (this.draining) throw new KvStoreError('unavailable', 'kv-store is draining');
        const hashes = unpackHashes(r.hashes);
        if (hashes === undefined || hashes.length !== r.sizes.length) {
          throw new KvStoreError(
            'invalid_argument',
            `${r.hashes.byteLength} bytes of hashes for ${r.sizes.length} block sizes (8 bytes per hash)`,
          );
        }
        const b = await store.beginPut(
          r.model_id,
          hashes.map((hash, i) => ({ hash, size: r.sizes[i] as number })),
          { ttlMs: ttl(r.ttl_ms) },
        );
        return { put_id: b.putId, already_stored: [...b.alreadyStored], reserved_bytes: b.reservedBytes, expires_at_ms: b.expiresAt };
      },
      CommitPut: (r: W.CommitPutRequestMsg): W.CommitPutResponseMsg => {
        const c = store.commitPut(r.put_id);
        return { stored: [...c.stored], already_stored: [...c.alreadyStored] };
      },
      RevokePut: (r: W.RevokePutRequestMsg): W.RevokePutResponseMsg => ({ revoked: store.revokePut(r.put_id) }),
      Get: (r: W.GetRequestMsg, signal: AbortSignal, caller: string) => this.get(r, signal, caller),
      Exists: (r: W.HashesRequestMsg): W.TiersResponseMsg => ({ tiers: store.exists(r.model_id, r.hashes).map((t) => t ?? '') }),
      LongestPrefix: (r: W.HashesRequestMsg): W.TiersResponseMsg => ({ tiers: [...store.longestPrefix(r.model_id, r.hashes).tiers] }),
      Remove: async (r: W.HashesRequestMsg): Promise<W.RemoveResponseMsg> => {
        const x = await store.remove(r.model_id, r.hashes);
        return { removed: [...x.removed], leased: [...x.leased] };
      },
      Pin: (r: W.PinRequestMsg): W.PinResponseMsg => {
        const p = store.pin(r.model_id, r.hashes, r.ttl_ms);
        return { pinned: [...p.pinned], until_ms: p.until };
      },
      Snapshot: (): W.SnapshotResponseMsg => this.snapshot(),
      Stats: (): W.StoreStatsResponseMsg => this.stats(),
      Health: (): W.StoreHealthResponseMsg => ({
        status: this.draining ? 'draining' : 'serving',
        node: this.opts.nodeId,
        incarnation: this.incarnation,
      }),
    };
    const out: UntypedServiceImplementation = {};
    for (const [name, fn] of Object.entries(h) as [string, (req: never, signal: AbortSignal, caller: string) => unknown][]) {
      out[name] = (call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) => {
        const ac = new AbortController();
        let answered = false;
        // grpc-js reports every call it answered as cancelled too: only a call still running is aborted.
        call.on('cancelled', () => answered || ac.abort());
        const answer: sendUnaryData<unknown> = (err, res) => {
          answered = true;
          cb(err, res);
        };
        const caller = peerHost(call.getPeer());
        Promise.resolve()
          .then(() => (MEMBERS_ONLY.has(name) ? this.fromMember(caller) : undefined))
          .then(() => fn(call.request as never, ac.signal, caller))
          .then((res) => answer(null, res))
          .catch((err: unknown) => answer(this.statusOf(err), null));
      };
    }
    return out;
  }

  private statusOf(err: unknown): { code: status; details: string } {
    if (err instanceof KvStoreError) return { code: GRPC_STATUS[err.code], details: err.message };
    const e = err as { code?: unknown; message?: string };
    // Transfer errors (the sink refused or vanished) say so in their message.
    if (typeof e.code === 'string') return { code: status.UNAVAILABLE, details: `${e.code}: ${e.message ?? ''}` };
    this.opts.logger.error({ err: String(err) }, 'kv-store: call failed');
    return { code: status.INTERNAL, details: e.message ?? String(err) };
  }
}

/** Calls that change what is stored or send it somewhere: registered services only (reads of what is held stay open to the cluster). */
const MEMBERS_ONLY: ReadonlySet<string> = new Set(['BeginPut', 'CommitPut', 'RevokePut', 'Get', 'Remove', 'Pin']);

/** A transfer carrying a put's blocks: its put, and whether the transfer began it (put_begin). */
interface PutTransfer {
  readonly putId: string;
  readonly begun: boolean;
}

/** A refusal for the transfer engine to carry back: the store's code leads the message (`resource_exhausted: ...`). */
function withCode(err: unknown): unknown {
  return err instanceof KvStoreError ? new Error(`${err.code}: ${err.message}`) : err;
}

function tierMsg(t: TierStats): W.TierStatsMsg {
  return {
    blocks: t.blocks,
    bytes: t.bytes,
    used_bytes: t.usedBytes,
    capacity_bytes: t.capacityBytes,
    hits: t.hits,
    misses: t.misses,
    evictions: t.evictions,
    read_bytes: t.readBytes,
    write_bytes: t.writeBytes,
    corrupt_dropped: t.corruptDropped,
  };
}
