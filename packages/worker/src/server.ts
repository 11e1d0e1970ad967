// A worker process's core: an engine behind the Worker gRPC service, the transfer engine's receiving
// (decode) or sending (prefill) end, registration in the registry, KV events and load reports.
import { randomBytes } from 'node:crypto';
import { Server, ServerCredentials, status, type ServerUnaryCall, type ServerWritableStream, type sendUnaryData } from '@grpc/grpc-js';
import type { ControlPlane, Logger, Membership, Registration } from '@pdserve/control-plane';
import { KvEventPublisher } from '@pdserve/control-plane';
import { EngineError, type LLMEngine, type PrefilledKv } from '@pdserve/engine';
import { chainHashes } from '@pdserve/kv-cache';
import { TransferReceiver, TransferSender, type IncomingTransfer, type KvBlock, type TransportKind } from '@pdserve/transfer';
import { outputToWire, samplingFromWire } from './codec';
import { WorkerClient, toCallError } from './client';
import { WORKER_GRPC_OPTIONS, workerService } from './proto';
import { StoreLink, type StoreLinkOptions } from './store-link';
import type * as W from './wire';

export type WorkerRole = 'prefill' | 'decode' | 'mixed';

export interface WorkerServerOptions {
  readonly role: WorkerRole;
  /** Stable instance id (registry key, router worker id). */
  readonly instanceId: string;
  readonly engine: LLMEngine;
  readonly controlPlane: ControlPlane;
  readonly logger: Logger;
  /** Address the gRPC server binds; default 127.0.0.1. */
  readonly host?: string;
  /** Address others dial; default `host`. */
  readonly advertiseHost?: string;
  /** gRPC port; 0 picks a free one. */
  readonly grpcPort?: number;
  /** Port of the TCP data plane that peers pull this worker's KV blocks from; 0 or undefined = any free port. */
  readonly dataPort?: number;
  /** Admin (metrics/health) address advertised in the registry, if any. */
  readonly adminAddress?: string;
  /** Transports this worker receives KV over, in preference order; default shm, tcp, grpc. */
  readonly transports?: readonly TransportKind[];
  /** Transport used when sending KV: 'auto' picks the receiver's preferred usable one. */
  readonly sendTransport?: 'auto' | TransportKind;
  /** How often a load report is published (ms); default 250. */
  readonly loadReportIntervalMs?: number;
  /** Told about each KV transfer (bytes, seconds, direction, transport) for metrics. */
  readonly onTransfer?: (direction: 'in' | 'out', bytes: number, seconds: number, transport: TransportKind) => void;
  /** Told about each KV transfer abandoned (peer gone, checksum mismatch, timeout) for metrics. */
  readonly onTransferFailed?: (direction: 'in' | 'out') => void;
  /** Offload evicted blocks to, and prefetch prefixes from, the kv-store nodes in the registry. */
  readonly kvStore?: StoreLinkOptions;
}

/** Status codes for the engine's failure classes, mapped once. */
const ENGINE_STATUS: Record<EngineError['code'], status> = {
  invalid_request: status.INVALID_ARGUMENT,
  context_length_exceeded: status.INVALID_ARGUMENT,
  queue_full: status.RESOURCE_EXHAUSTED,
  not_ready: status.UNAVAILABLE,
  internal: status.INTERNAL,
};

export class WorkerServer {
  readonly incarnation = randomBytes(8).toString('hex');
  private readonly server = new Server(WORKER_GRPC_OPTIONS);
  private receiver: TransferReceiver | undefined;
  private readonly sender: TransferSender;
  private readonly publisher: KvEventPublisher;
  private readonly inFlight = new Map<string, AbortController>();
  private readonly expected = new Map<string, { resolve: (blocks: KvBlock[]) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private storeLink: StoreLink | undefined;
  private membership: Membership | undefined;
  private readonly peers = new Map<string, WorkerClient>();
  private registration: Registration | undefined;
  private loadTimer: NodeJS.Timeout | undefined;
  private draining = false;
  private address = '';

  constructor(private readonly opts: WorkerServerOptions) {
    this.publisher = new KvEventPublisher(opts.controlPlane.events, { worker: opts.instanceId, incarnation: this.incarnation });
    // Receivers of this worker's KV (decode workers, kv-store nodes) pull it from this data port.
    this.sender = new TransferSender({ tcp: { host: opts.host ?? '127.0.0.1', advertiseHost: opts.advertiseHost, port: opts.dataPort } });
    opts.engine.pool.onEvent((e) => (e.kind === 'stored' ? this.publisher.stored([e.hash], 'device') : this.publisher.removed([e.hash], 'device')));
  }

  get grpcAddress(): string {
    return this.address;
  }

  async start(): Promise<string> {
    const { opts } = this;
    const host = opts.host ?? '127.0.0.1';
    if (opts.role !== 'prefill' || opts.kvStore !== undefined) {
      this.receiver = await TransferReceiver.start({
        transports: opts.transports,
        onTransfer: (t) => this.admitTransfer(t),
      });
      const svc = this.receiver.grpcService();
      this.server.addService(svc.definition, svc.implementation);
    }
    this.server.addService(workerService(), {
      Generate: (call: ServerWritableStream<W.GenerateRequestMsg, W.GenerateChunkMsg>) => void this.handleGenerate(call),
      Prefill: (call: ServerUnaryCall<W.PrefillRequestMsg, W.PrefillResponseMsg>, cb: sendUnaryData<W.PrefillResponseMsg>) => void this.handlePrefill(call, cb),
      Cancel: (call: ServerUnaryCall<W.CancelRequestMsg, W.CancelResponseMsg>, cb: sendUnaryData<W.CancelResponseMsg>) => {
        const ac = this.inFlight.get(call.request.request_id);
        ac?.abort();
        cb(null, { found: ac !== undefined });
      },
      Health: (_call: ServerUnaryCall<W.HealthRequestMsg, W.HealthResponseMsg>, cb: sendUnaryData<W.HealthResponseMsg>) =>
        cb(null, { status: this.draining ? 'draining' : 'serving', role: opts.role, instance_id: opts.instanceId, incarnation: this.incarnation }),
      Stats: (_call: ServerUnaryCall<W.StatsRequestMsg, W.StatsResponseMsg>, cb: sendUnaryData<W.StatsResponseMsg>) => cb(null, this.statsMsg()),
      BlockSnapshot: (_call: ServerUnaryCall<W.BlockSnapshotRequestMsg, W.BlockSnapshotResponseMsg>, cb: sendUnaryData<W.BlockSnapshotResponseMsg>) => {
        // Flushing first makes `seq` cover every event up to this snapshot.
        this.publisher.flush();
        cb(null, { worker: opts.instanceId, incarnation: this.incarnation, seq: this.publisher.seq, hashes: opts.engine.pool.cachedHashes() });
      },
    });
    if (opts.kvStore !== undefined) {
      this.membership = await opts.controlPlane.registry.watch();
      this.storeLink = new StoreLink(opts.engine, this.membership, this.sender, { address: () => this.address, expect: (id) => this.expectTransfer(id, 30_000) }, opts.logger, opts.kvStore);
      opts.engine.offload(this.storeLink);
    }
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`${host}:${opts.grpcPort ?? 0}`, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.address = `${opts.advertiseHost ?? host}:${port}`;
    await this.sender.listen(); // a taken --data-port fails here, not at the first handoff
    const engine = opts.engine;
    this.registration = await opts.controlPlane.registry.register({
      id: opts.instanceId,
      role: opts.role,
      grpcAddress: this.address,
      adminAddress: opts.adminAddress ?? '',
      model: engine.modelId,
      capacity: { totalBlocks: engine.pool.numBlocks, blockSize: engine.blockSize, maxNumSeqs: engine.maxNumSeqs },
      transfer: this.receiver?.advertisement(),
      incarnation: this.incarnation,
      startedAt: Date.now(),
    });
    this.loadTimer = setInterval(() => this.publishLoad(), opts.loadReportIntervalMs ?? 250);
    this.loadTimer.unref();
    this.publishLoad();
    return this.address;
  }

  /** Graceful drain: leave the registry, refuse new work, let running requests finish (bounded), stop. */
  async drain(graceMs = 30_000): Promise<void> {
    this.draining = true;
    await this.registration?.deregister().catch(() => undefined);
    const until = Date.now() + graceMs;
    while (this.inFlight.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    for (const ac of this.inFlight.values()) ac.abort();
    await this.close();
  }

  /** The kv-store link, when enabled (stats, tests). */
  get kvStore(): StoreLink | undefined {
    return this.storeLink;
  }

  async close(): Promise<void> {
    if (this.loadTimer) clearInterval(this.loadTimer);
    this.opts.engine.offload(undefined);
    this.storeLink?.close();
    this.membership?.close();
    this.publisher.close();
    this.server.forceShutdown();
    await this.receiver?.close();
    this.sender.close();
    for (const c of this.peers.values()) c.close();
  }

  private statsMsg(): W.StatsResponseMsg {
    const s = this.opts.engine.stats();
    return {
      running: s.running,
      waiting: s.waiting,
      free_blocks: s.freeBlocks,
      used_blocks: s.usedBlocks,
      cached_blocks: s.cachedBlocks,
      total_blocks: s.totalBlocks,
      prefix_cache_hit_tokens: s.prefixCacheHitTokens,
      prefix_cache_query_tokens: s.prefixCacheQueryTokens,
      prefill_tokens_computed: s.prefillTokensComputed,
      preemptions: s.preemptions,
      queued_prefill_tokens: s.queuedPrefillTokens,
      import_fallbacks: s.importFallbacks,
      prefetched_tokens: s.prefetchedTokens,
      prefetch_rejects: s.prefetchRejects,
      store_prefetched_blocks: this.storeLink?.stats().prefetchedBlocks ?? 0,
      store_offloaded_blocks: this.storeLink?.stats().offloadedBlocks ?? 0,
      store_offload_dropped: this.storeLink?.stats().offloadDropped ?? 0,
    };
  }

  private publishLoad(): void {
    const s = this.opts.engine.stats();
    this.opts.controlPlane.events.publishLoad({
      worker: this.opts.instanceId,
      running: s.running,
      waiting: s.waiting,
      freeBlocks: s.freeBlocks,
      totalBlocks: s.totalBlocks,
      queuedPrefillTokens: s.queuedPrefillTokens,
      ts: Date.now(),
    });
  }

  private track(requestId: string, onCancel: () => void): AbortController {
    const ac = new AbortController();
    this.inFlight.set(requestId, ac);
    onCancel();
    return ac;
  }

  private async handleGenerate(call: ServerWritableStream<W.GenerateRequestMsg, W.GenerateChunkMsg>): Promise<void> {
    const req = call.request;
    const ac = this.track(req.request_id, () => undefined);
    call.on('cancelled', () => ac.abort());
    try {
      if (this.draining) throw new EngineError('not_ready', 'worker is draining');
      const sampling = samplingFromWire(req.sampling);
      let prefilled: PrefilledKv | undefined;
      let prefilledBy = '';
      if (req.prefill?.mode === 'remote' && this.opts.role !== 'prefill' && req.prefill.prefill_address) {
        try {
          prefilled = await this.remotePrefill(req, ac.signal);
          prefilledBy = req.prefill.prefill_worker;
        } catch (err) {
          if (ac.signal.aborted) return;
          this.opts.onTransferFailed?.('in');
          // The prefill pool failed us: prefill here instead (slower, same tokens).
          this.opts.logger.warn({ requestId: req.request_id, error: toCallError(err).message }, 'remote prefill failed; prefilling locally');
        }
      }
      const prefetched = prefilled === undefined ? await this.storeLink?.prefetch(req.prompt_token_ids, ac.signal) : undefined;
      if (ac.signal.aborted) return;
      for await (const o of this.opts.engine.generate({ requestId: req.request_id, promptTokenIds: req.prompt_token_ids, sampling, priority: req.priority, signal: ac.signal, prefilled, prefetched })) {
        if (ac.signal.aborted) break;
        call.write(outputToWire(o, prefilledBy));
      }
      call.end();
    } catch (err) {
      this.fail(call, err);
    } finally {
      this.inFlight.delete(req.request_id);
    }
  }

  /** Asks the prefill worker for the prompt's KV; resolves once the blocks are here, verified. */
  private async remotePrefill(req: W.GenerateRequestMsg, signal: AbortSignal): Promise<PrefilledKv> {
    const engine = this.opts.engine;
    const fromBlock = engine.cachedPrefixBlocks(req.prompt_token_ids);
    const transferId = randomBytes(16).toString('hex');
    const expected = this.expectTransfer(transferId, 120_000);
    try {
      const peer = this.peer(req.prefill!.prefill_address);
      const res = await peer.prefill(
        {
          request_id: req.request_id,
          prompt_token_ids: req.prompt_token_ids,
          sampling: req.sampling,
          from_block: fromBlock,
          target: { grpc_address: this.address, transfer_id: transferId, transport: 'auto' },
        },
        signal,
      );
      const blocks = (await expected.arrived).map((b) => b.data);
      const rng = res.rng_state.length === 4 ? (res.rng_state as unknown as readonly [number, number, number, number]) : undefined;
      return {
        fromBlock,
        blocks,
        firstToken: { tokenId: res.first_token, logprob: res.first_logprob, topLogprobs: res.first_top.map((t) => ({ tokenId: t.token_id, logprob: t.logprob })) },
        rngState: rng,
        cachedTokens: res.cached_tokens,
      };
    } finally {
      expected.done();
    }
  }

  /** Registers a transfer this worker asked for; only such transfers are admitted. */
  private expectTransfer(transferId: string, timeoutMs: number): { arrived: Promise<KvBlock[]>; done: () => void } {
    const arrived = new Promise<KvBlock[]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('KV transfer did not arrive')), timeoutMs);
      timer.unref();
      this.expected.set(transferId, { resolve, reject, timer });
    });
    arrived.catch(() => undefined);
    return {
      arrived,
      done: () => {
        const e = this.expected.get(transferId);
        if (e) clearTimeout(e.timer);
        this.expected.delete(transferId);
      },
    };
  }

  /** The transfer engine hands over a whole, verified transfer; only expected ones are admitted. */
  private admitTransfer(t: IncomingTransfer): void {
    const e = this.expected.get(t.transferId);
    if (!e) throw new Error(`unexpected transfer ${t.transferId}`);
    const started = performance.now();
    // The receive slab is reused after this returns: keep copies.
    e.resolve(t.blocks.map((b) => ({ hash: b.hash, data: b.data.slice() })));
    this.opts.onTransfer?.('in', t.bytes, (performance.now() - started) / 1000, t.transport);
  }

  private async handlePrefill(call: ServerUnaryCall<W.PrefillRequestMsg, W.PrefillResponseMsg>, cb: sendUnaryData<W.PrefillResponseMsg>): Promise<void> {
    const req = call.request;
    const ac = this.track(`prefill:${req.request_id}`, () => undefined);
    call.on('cancelled', () => ac.abort());
    try {
      if (this.draining) throw new EngineError('not_ready', 'worker is draining');
      if (!req.target) throw new EngineError('invalid_request', 'prefill needs a transfer target');
      const sampling = { ...samplingFromWire(req.sampling), maxTokens: 1 };
      let first: { tokenId: number; logprob: number; top: { tokenId: number; logprob: number }[] } | undefined;
      let cached = 0;
      let kv: { blocks: readonly Uint8Array[]; rngState?: readonly number[] } | undefined;
      const prefetched = await this.storeLink?.prefetch(req.prompt_token_ids, ac.signal);
      for await (const o of this.opts.engine.generate({ requestId: `prefill:${req.request_id}`, promptTokenIds: req.prompt_token_ids, sampling, signal: ac.signal, exportKv: { fromBlock: req.from_block }, prefetched })) {
        if (o.tokenIds.length > 0 && !first) first = { tokenId: o.tokenIds[0]!, logprob: o.logprobs?.[0]?.logprob ?? 0, top: [...(o.logprobs?.[0]?.top ?? [])] };
        cached = o.cachedTokens;
        if (o.kv) kv = o.kv;
      }
      if (!first || !kv) throw new EngineError('internal', ac.signal.aborted ? 'prefill cancelled' : 'prefill produced no KV');
      const hashes = chainHashes(req.prompt_token_ids, this.opts.engine.blockSize, this.opts.engine.modelId);
      const blocks = kv.blocks.map((data, k) => ({ hash: hashes[req.from_block + k] ?? '0'.repeat(16), data }));
      const t0 = performance.now();
      const receipt = await this.sender
        .send({
          peer: { grpcAddress: req.target.grpc_address },
          blocks,
          transferId: req.target.transfer_id,
          transport: (this.opts.sendTransport ?? req.target.transport ?? 'auto') as 'auto' | TransportKind,
          signal: ac.signal,
          deadlineMs: 60_000,
        })
        .catch((err: unknown) => {
          if (!ac.signal.aborted) this.opts.onTransferFailed?.('out');
          throw err;
        });
      this.opts.onTransfer?.('out', receipt.bytes, (performance.now() - t0) / 1000, receipt.transport);
      cb(null, {
        first_token: first.tokenId,
        first_logprob: first.logprob,
        first_top: first.top.map((t) => ({ token_id: t.tokenId, logprob: t.logprob })),
        rng_state: kv.rngState ? [...kv.rngState] : [],
        cached_tokens: cached,
        blocks: receipt.blocks,
        bytes: receipt.bytes,
        transport: receipt.transport,
      });
    } catch (err) {
      cb(this.statusOf(err), null);
    } finally {
      this.inFlight.delete(`prefill:${req.request_id}`);
    }
  }

  private peer(address: string): WorkerClient {
    let c = this.peers.get(address);
    if (!c) {
      c = new WorkerClient(address);
      this.peers.set(address, c);
    }
    return c;
  }

  private statusOf(err: unknown): { code: status; details: string } {
    if (err instanceof EngineError) return { code: ENGINE_STATUS[err.code], details: err.message };
    return { code: status.INTERNAL, details: (err as Error).message ?? String(err) };
  }

  private fail(call: ServerWritableStream<W.GenerateRequestMsg, W.GenerateChunkMsg>, err: unknown): void {
    const s = this.statusOf(err);
    if (!(err instanceof EngineError)) this.opts.logger.error({ error: s.details }, 'generate failed');
    call.emit('error', { code: s.code, details: s.details });
  }
}
