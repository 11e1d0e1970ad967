// A worker process's core: an engine behind the Worker gRPC service, the transfer engine's receiving
// (decode) or sending (prefill) end, registration in the registry, KV events and load reports.
import { randomBytes } from 'node:crypto';
import { Server, ServerCredentials, status, type ServerUnaryCall, type ServerWritableStream, type sendUnaryData } from '@grpc/grpc-js';
import type { ControlPlane, Logger, Membership, Registration } from '@pdserve/control-plane';
import { KvEventPublisher } from '@pdserve/control-plane';
import { EngineError, type GenerateOutput, type LLMEngine, type PrefilledKv } from '@pdserve/engine';
import { blockCrc32, chainHashes } from '@pdserve/kv-cache';
import { TransferReceiver, TransferSender, type IncomingTransfer, type KvBlock, type TransferMeta, type TransportKind } from '@pdserve/transfer';
import { firstFromWire, firstToWire, outputToWire, prefillSampling, sampledFromWire, samplingFromWire } from './codec';
import { WorkerClient, prefillFirst, toCallError } from './client';
import { WORKER_GRPC_OPTIONS, workerService } from './proto';
import { StoreLink, type StoreLinkOptions } from './store-link';
import { afterStreamedFirst } from './streamed-first';
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
  /** Transports this worker receives KV over, in preference order; default tcp, shm, grpc. */
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
  /** Prefills' KV that arrived before the request naming it (pushed handoff), briefly. */
  private readonly parked = new Map<string, { readonly blocks: KvBlock[]; readonly meta: TransferMeta; readonly bytes: number; readonly timer: NodeJS.Timeout }>();
  private parkedBytes = 0;
  private readonly expected = new Map<string, { resolve: (blocks: KvBlock[], meta: TransferMeta) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
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
        // A transfer this worker waits for failed: stop waiting (and prefill locally) now.
        onDiscard: (id, error) => this.expected.get(id)?.reject(error),
      });
      const svc = this.receiver.grpcService();
      this.server.addService(svc.definition, svc.implementation);
    }
    this.server.addService(workerService(), {
      Generate: (call: ServerWritableStream<W.GenerateRequestMsg, W.GenerateChunkMsg>) => void this.handleGenerate(call),
      Prefill: (call: ServerWritableStream<W.PrefillRequestMsg, W.PrefillEventMsg>) => void this.handlePrefill(call),
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
    // Let the calls that just finished flush their last messages and status before the connections close.
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 2_000);
      this.server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
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
    for (const id of [...this.parked.keys()]) this.unpark(id);
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
    const req = withRequestSeed(call.request);
    const ac = this.track(req.request_id, () => undefined);
    call.on('cancelled', () => ac.abort());
    try {
      if (this.draining) throw new EngineError('not_ready', 'worker is draining');
      const sampling = samplingFromWire(req.sampling);
      let prefilled: PrefilledKv | undefined;
      let prefilledBy = '';
      // The first token's id once it went to the client ahead of the KV (see streamed-first.ts).
      let streamedFirst: number | undefined;
      if (req.prefill?.mode === 'pushed' && this.opts.role !== 'prefill' && req.prefill.transfer_id) {
        try {
          prefilled = await this.pushedPrefill(req, ac.signal);
          prefilledBy = req.prefill.prefill_worker;
        } catch (err) {
          if (ac.signal.aborted) return;
          this.opts.onTransferFailed?.('in');
          // Prefilled here instead: the same tokens, the first one included (the gateway drops it).
          this.opts.logger.warn({ requestId: req.request_id, error: (err as Error).message }, 'pushed prefill did not arrive; prefilling locally');
        }
      } else if (req.prefill?.mode === 'remote' && this.opts.role !== 'prefill' && req.prefill.prefill_address) {
        const prefillWorker = req.prefill.prefill_worker;
        try {
          prefilled = await this.remotePrefill(req, ac.signal, (first) => {
            call.write(outputToWire(first, prefillWorker));
            streamedFirst = first.tokenIds[0];
          });
          prefilledBy = prefillWorker;
        } catch (err) {
          if (ac.signal.aborted) return;
          this.opts.onTransferFailed?.('in');
          // The prefill pool failed us: prefill here instead (slower, same tokens, also the first one if
          // it was already streamed: sampling is deterministic for greedy and seeded requests).
          this.opts.logger.warn({ requestId: req.request_id, error: toCallError(err).message }, 'remote prefill failed; prefilling locally');
        }
      }
      const cacheSalt = req.cache_salt ?? '';
      const prefetched = prefilled === undefined ? await this.storeLink?.prefetch(req.prompt_token_ids, ac.signal, cacheSalt) : undefined;
      if (ac.signal.aborted) return;
      const outputs = this.opts.engine.generate({ requestId: req.request_id, promptTokenIds: req.prompt_token_ids, sampling, priority: req.priority, signal: ac.signal, prefilled, prefetched, cacheSalt });
      for await (const o of afterStreamedFirst(outputs, streamedFirst)) {
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

  /**
   * The KV a prefill worker pushed here at the gateway's request (transfer `transfer_id`, from block
   * `from_block` on), imported past this worker's own cached prefix. Its meta carries the first token and
   * the sampler's state.
   */
  private async pushedPrefill(req: W.GenerateRequestMsg, signal: AbortSignal): Promise<PrefilledKv> {
    const transferId = req.prefill!.transfer_id;
    const expected = this.expectTransfer(transferId, PUSHED_WAIT_MS);
    try {
      // A prefill worker that died after its first token never begins the transfer: give up on it soon.
      const viaBegun = this.transferBegins(transferId, PUSHED_BEGIN_MS, signal, expected.settled).then(() => expected.arrived);
      viaBegun.catch(() => undefined); // `arrived` may win the race
      const blocks = await raceAbort(Promise.race([expected.arrived, viaBegun]), signal);
      const meta = expected.meta() ?? {};
      const first = JSON.parse(meta['first'] ?? 'null') as W.PrefillFirstMsg | null;
      const sentFrom = Number(meta['from_block'] ?? 'NaN');
      const own = this.opts.engine.cachedPrefixBlocks(req.prompt_token_ids, req.cache_salt);
      if (first === null || !Number.isInteger(sentFrom) || sentFrom > own) throw new Error('pushed KV does not fit this worker\'s cache');
      const take = blocks.slice(own - sentFrom);
      return {
        fromBlock: own,
        blocks: take.map((b) => b.data),
        checksums: take.map((b) => b.checksum),
        firstToken: sampledFromWire(first),
        rngState: parseRngState(meta['rng_state']),
        cachedTokens: Math.max(first.cached_tokens, Math.min(own * this.opts.engine.blockSize, req.prompt_token_ids.length)),
      };
    } finally {
      expected.done();
    }
  }

  /**
   * Asks the prefill worker for the prompt's KV; resolves once the blocks are here, verified. `onFirst`
   * gets the first token as soon as the prefill worker has sampled it, while the KV is still on its way.
   */
  private async remotePrefill(req: W.GenerateRequestMsg, signal: AbortSignal, onFirst: (first: GenerateOutput) => void): Promise<PrefilledKv> {
    const engine = this.opts.engine;
    const fromBlock = engine.cachedPrefixBlocks(req.prompt_token_ids, req.cache_salt);
    const transferId = randomBytes(16).toString('hex');
    const expected = this.expectTransfer(transferId, 120_000);
    try {
      const peer = this.peer(req.prefill!.prefill_address);
      const events = peer.prefill(
        {
          request_id: req.request_id,
          prompt_token_ids: req.prompt_token_ids,
          sampling: req.sampling,
          from_block: fromBlock,
          target: { grpc_address: this.address, transfer_id: transferId, transport: 'auto' },
          cache_salt: req.cache_salt,
        },
        signal,
      );
      const { first, rest } = await prefillFirst(events);
      // Counted as the engine will once the KV is imported: the larger of the two workers' cache hits.
      const cached = Math.max(first.cached_tokens, Math.min(fromBlock * engine.blockSize, first.prompt_tokens));
      onFirst(firstFromWire(first, req.sampling?.has_logprobs === true, cached));
      // The KV is all the import needs (its transfer carries the sampler's state): no waiting for `done`,
      // which only comes after the receipt made its way back to the prefill worker. A stream that fails
      // before the KV arrived fails the handoff.
      const arrived = await Promise.race([expected.arrived, rest.then(() => expected.arrived)]);
      return {
        fromBlock,
        blocks: arrived.map((b) => b.data),
        checksums: arrived.map((b) => b.checksum),
        firstToken: sampledFromWire(first),
        rngState: parseRngState(expected.meta()?.['rng_state']),
        cachedTokens: first.cached_tokens,
      };
    } finally {
      expected.done();
    }
  }

  /** Registers a transfer this worker asked for; only such transfers are admitted. */
  private expectTransfer(transferId: string, timeoutMs: number): { arrived: Promise<KvBlock[]>; meta: () => TransferMeta | undefined; settled: () => boolean; done: () => void } {
    let meta: TransferMeta | undefined;
    const parked = this.unpark(transferId);
    if (parked !== undefined) {
      return { arrived: Promise.resolve(parked.blocks), meta: () => parked.meta, settled: () => true, done: () => undefined };
    }
    const arrived = new Promise<KvBlock[]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('KV transfer did not arrive')), timeoutMs);
      timer.unref();
      this.expected.set(transferId, {
        resolve: (blocks, m) => {
          meta = m;
          resolve(blocks);
        },
        reject, timer,
      });
    });
    arrived.catch(() => undefined);
    return {
      arrived,
      meta: () => meta,
      settled: () => meta !== undefined, // it arrived
      done: () => {
        const e = this.expected.get(transferId);
        if (e) clearTimeout(e.timer);
        this.expected.delete(transferId);
      },
    };
  }

  /** Resolves once transfer `transferId` has begun arriving (or `arrived()`); rejects after `withinMs`. */
  private async transferBegins(transferId: string, withinMs: number, signal: AbortSignal, arrived: () => boolean): Promise<void> {
    const until = Date.now() + withinMs;
    while (!signal.aborted) {
      if (arrived() || this.receiver?.progress().some((p) => p.transferId === transferId)) return;
      if (Date.now() >= until) throw new Error(`KV transfer ${transferId} did not begin within ${withinMs} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  private unpark(transferId: string): { readonly blocks: KvBlock[]; readonly meta: TransferMeta } | undefined {
    const p = this.parked.get(transferId);
    if (p === undefined) return undefined;
    this.parked.delete(transferId);
    clearTimeout(p.timer);
    this.parkedBytes -= p.bytes;
    return p;
  }

  /** The transfer engine hands over a whole, verified transfer; only expected ones are admitted. */
  private admitTransfer(t: IncomingTransfer): void {
    const e = this.expected.get(t.transferId);
    const prefill = t.meta['first'] !== undefined;
    if (!e && !(prefill && this.parked.size < MAX_PARKED && this.parkedBytes + t.bytes <= MAX_PARKED_BYTES)) {
      throw new Error(`unexpected transfer ${t.transferId}`);
    }
    const started = performance.now();
    // The receive slab is reused after this returns: keep copies.
    const blocks = t.blocks.map((b) => ({ hash: b.hash, data: b.data.slice(), checksum: b.checksum }));
    if (e) e.resolve(blocks, t.meta);
    else {
      // A pushed prefill's KV can overtake the Generate that names it: it waits here for a while.
      const timer = setTimeout(() => this.unpark(t.transferId), PARKED_MS);
      timer.unref();
      this.parked.set(t.transferId, { blocks, meta: t.meta, bytes: t.bytes, timer });
      this.parkedBytes += t.bytes;
    }
    this.opts.onTransfer?.('in', t.bytes, (performance.now() - started) / 1000, t.transport);
  }

  private async handlePrefill(call: ServerWritableStream<W.PrefillRequestMsg, W.PrefillEventMsg>): Promise<void> {
    const req = call.request;
    const ac = this.track(`prefill:${req.request_id}`, () => undefined);
    call.on('cancelled', () => ac.abort());
    try {
      if (this.draining) throw new EngineError('not_ready', 'worker is draining');
      if (!req.target) throw new EngineError('invalid_request', 'prefill needs a transfer target');
      const sampling = prefillSampling(samplingFromWire(req.sampling));
      let first: W.PrefillFirstMsg | undefined;
      let kv: { blocks: readonly Uint8Array[]; rngState?: readonly number[] } | undefined;
      const cacheSalt = req.cache_salt ?? '';
      const prefetched = await this.storeLink?.prefetch(req.prompt_token_ids, ac.signal, cacheSalt);
      for await (const o of this.opts.engine.generate({ requestId: `prefill:${req.request_id}`, promptTokenIds: req.prompt_token_ids, sampling, signal: ac.signal, exportKv: { fromBlock: req.from_block }, prefetched, cacheSalt })) {
        if (o.tokenIds.length > 0 && !first) {
          first = firstToWire(o);
          // The client's first token need not wait for the KV transfer below.
          call.write({ kind: 'first', first });
        }
        if (o.kv) kv = o.kv;
      }
      if (!first || !kv) throw new EngineError('internal', ac.signal.aborted ? 'prefill cancelled' : 'prefill produced no KV');
      const hashes = chainHashes(req.prompt_token_ids, this.opts.engine.blockSize, this.opts.engine.modelId, cacheSalt);
      // Each block's CRC-32 follows from its header (no pass over it); the receiver verifies it in transit.
      const blocks = kv.blocks.map((data, k) => ({ hash: hashes[req.from_block + k] ?? '0'.repeat(16), data, checksum: blockCrc32(data) }));
      const t0 = performance.now();
      const receipt = await this.sender
        .send({
          peer: { grpcAddress: req.target.grpc_address },
          blocks,
          transferId: req.target.transfer_id,
          // The first token and the sampler's state after it: a pushed handoff imports from these alone.
          meta: { rng_state: kv.rngState ? kv.rngState.join(',') : '', first: JSON.stringify(first), from_block: String(req.from_block) },
          transport: (this.opts.sendTransport ?? req.target.transport ?? 'auto') as 'auto' | TransportKind,
          signal: ac.signal,
          deadlineMs: 60_000,
        })
        .catch((err: unknown) => {
          if (!ac.signal.aborted) this.opts.onTransferFailed?.('out');
          throw err;
        });
      this.opts.onTransfer?.('out', receipt.bytes, (performance.now() - t0) / 1000, receipt.transport);
      call.write({
        kind: 'done',
        done: {
          first_token: first.first_token,
          first_logprob: first.first_logprob,
          first_top: first.first_top,
          rng_state: kv.rngState ? [...kv.rngState] : [],
          cached_tokens: first.cached_tokens,
          blocks: receipt.blocks,
          bytes: receipt.bytes,
          transport: receipt.transport,
        },
      });
      call.end();
    } catch (err) {
      this.endWithStatus(call, err);
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
    if (!(err instanceof EngineError)) this.opts.logger.error({ error: this.statusOf(err).details }, 'generate failed');
    this.endWithStatus(call, err);
  }

  /** Ends a server stream with the gRPC status that `err` maps to. */
  private endWithStatus<Req, Res>(call: ServerWritableStream<Req, Res>, err: unknown): void {
    const s = this.statusOf(err);
    call.emit('error', { code: s.code, details: s.details });
  }
}

/**
 * Pushed handoffs: how long a decode worker waits for the KV's transfer to begin, and to arrive; how long
 * KV waits for its request.
 */
const PUSHED_BEGIN_MS = 1_000;
const PUSHED_WAIT_MS = 60_000;
const PARKED_MS = 10_000;
/** Prefills' KV parked at once (each is one prompt's blocks), and their bytes. */
const MAX_PARKED = 64;
const MAX_PARKED_BYTES = 256 * 1024 * 1024;

/** The sampler state a prefill worker put in its transfer's meta: four u32 words, or none (greedy). */
function parseRngState(text: string | undefined): readonly [number, number, number, number] | undefined {
  const words = (text ?? '').split(',').filter((w) => w !== '').map(Number);
  return words.length === 4 && words.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffff_ffff)
    ? (words as unknown as readonly [number, number, number, number]) : undefined;
}

/**
 * A remote prefill streams its first token before the KV arrives; should the handoff then fail, this
 * worker prefills locally and must sample that same token again. Greedy and seeded requests do; an
 * unseeded sampling request gets a seed of its own here (random, so its output stays as random).
 */
function withRequestSeed(req: W.GenerateRequestMsg): W.GenerateRequestMsg {
  return req.prefill?.mode === 'remote' && req.sampling !== null ? { ...req, sampling: seededSampling(req.sampling) } : req;
}

/** Sampling that samples the same tokens wherever it is recomputed: greedy or seeded as is, else seeded here. */
export function seededSampling(s: W.SamplingParamsMsg): W.SamplingParamsMsg {
  return s.has_seed || s.temperature <= 0 ? s : { ...s, has_seed: true, seed: randomBytes(6).readUIntLE(0, 6) };
}

/** `p`, or a rejection as soon as `signal` aborts. */
function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new Error('cancelled'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new Error('cancelled'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
