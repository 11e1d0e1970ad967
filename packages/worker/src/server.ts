// A worker process's core, as wiring: an engine behind the Worker gRPC service, the transfer engine's
// receiving (decode) or sending (prefill) end, registration in the registry, KV events and load reports.
// The pushed-prefill handoff itself is in handoff.ts; which transfers are taken in, in admission.ts.
import { randomBytes } from 'node:crypto';
import { Server, status, type ServerUnaryCall, type ServerWritableStream, type sendUnaryData } from '@grpc/grpc-js';
import { EngineError, type Logger, type PrefilledKv, type WorkerRole } from '@pdserve/contracts';
import {
  KvEventPublisher,
  RegisteredPeers,
  WORKER_FEATURES,
  type ControlPlane,
  type Membership,
  type Registration,
} from '@pdserve/control-plane';
import type { LLMEngine } from '@pdserve/engine';
import { serverCredentials, type TlsMaterial } from '@pdserve/rpc';
import { TransferReceiver, TransferSender, isTransferError, type KvBlock, type TransportKind } from '@pdserve/transfer';
import { TransferAdmission } from './admission';
import { outputToWire, samplingFromWire, serviceTierFromWire } from './codec';
import { engineErrorStatus } from './errors';
import { prefillAndPush, receivePushedKv, receiveStreamedKv, receiveStreamedPrefix } from './handoff';
import { WORKER_GRPC_OPTIONS, workerService } from './proto';
import { StoreLink, type StoreLinkOptions } from './store-link';
import type * as W from './wire';

/** How often a worker publishes its load (ms): the router's view of a worker is up to this old. */
export const LOAD_REPORT_INTERVAL_MS = 250;

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
  /** How often a load report is published (ms); default LOAD_REPORT_INTERVAL_MS. */
  readonly loadReportIntervalMs?: number;
  /** Told about each KV transfer (bytes, seconds, direction, transport) for metrics. */
  readonly onTransfer?: (direction: 'in' | 'out', bytes: number, seconds: number, transport: TransportKind) => void;
  /** Told about each KV transfer abandoned (peer gone, checksum mismatch, timeout) for metrics. */
  readonly onTransferFailed?: (direction: 'in' | 'out') => void;
  /** Offload evicted blocks to, and prefetch prefixes from, the kv-store nodes in the registry. */
  readonly kvStore?: StoreLinkOptions;
  /** mTLS on its gRPC server, every channel it opens and its transfer data port; plaintext without. */
  readonly tls?: TlsMaterial;
}

export class WorkerServer {
  readonly incarnation = randomBytes(8).toString('hex');
  private readonly server = new Server(WORKER_GRPC_OPTIONS);
  private receiver: TransferReceiver | undefined;
  private readonly sender: TransferSender;
  private readonly publisher: KvEventPublisher;
  private readonly inFlight = new Map<string, AbortController>();
  /** Which incoming KV transfers are expected (pushed prefills, kv-store fetches); the rest are refused. */
  private admission: TransferAdmission | undefined;
  private storeLink: StoreLink | undefined;
  private membership: Membership | undefined;
  /** The only workers this one sends KV to, and the only data ports it pulls KV from: the registry's. */
  private registered: RegisteredPeers | undefined;
  private registration: Registration | undefined;
  private loadTimer: NodeJS.Timeout | undefined;
  private draining = false;
  private address = '';

  constructor(private readonly opts: WorkerServerOptions) {
    this.publisher = new KvEventPublisher(opts.controlPlane.events, { worker: opts.instanceId, incarnation: this.incarnation });
    // Receivers of this worker's KV (decode workers, kv-store nodes) pull it from this data port.
    this.sender = new TransferSender({
      tcp: { host: opts.host ?? '127.0.0.1', advertiseHost: opts.advertiseHost, port: opts.dataPort },
      tls: opts.tls,
    });
    opts.engine.pool.onEvent((e) =>
      e.kind === 'stored' ? this.publisher.stored([e.hash], 'device') : this.publisher.removed([e.hash], 'device'),
    );
  }

  get grpcAddress(): string {
    return this.address;
  }

  async start(): Promise<string> {
    const { opts } = this;
    const host = opts.host ?? '127.0.0.1';
    this.membership = await opts.controlPlane.registry.watch();
    const registered = new RegisteredPeers(this.membership);
    this.registered = registered;
    if (opts.role !== 'prefill' || opts.kvStore !== undefined) {
      const admission = new TransferAdmission((bytes, seconds, transport) => opts.onTransfer?.('in', bytes, seconds, transport));
      this.admission = admission;
      this.receiver = await TransferReceiver.start({
        transports: opts.transports,
        tls: opts.tls,
        allowSource: (address) => registered.isDataPort(address),
        onBegin: (offer) => admission.begin(offer),
        onTransfer: (t) => admission.admit(t),
        // A transfer this worker waits for failed: stop waiting (and prefill locally) now.
        onDiscard: (id, error) => admission.discard(id, error),
      });
      const svc = this.receiver.grpcService();
      this.server.addService(svc.definition, svc.implementation);
    }
    this.server.addService(workerService(), {
      Generate: (call: ServerWritableStream<W.GenerateRequestMsg, W.GenerateChunkMsg>) => void this.handleGenerate(call),
      Prefill: (call: ServerWritableStream<W.PrefillRequestMsg, W.PrefillEventMsg>) => void this.handlePrefill(call),
      Health: (_call: ServerUnaryCall<W.HealthRequestMsg, W.HealthResponseMsg>, cb: sendUnaryData<W.HealthResponseMsg>) =>
        cb(null, {
          status: this.draining ? 'draining' : 'serving',
          role: opts.role,
          instance_id: opts.instanceId,
          incarnation: this.incarnation,
        }),
      Stats: (_call: ServerUnaryCall<W.StatsRequestMsg, W.StatsResponseMsg>, cb: sendUnaryData<W.StatsResponseMsg>) =>
        cb(null, this.statsMsg()),
      BlockSnapshot: (
        _call: ServerUnaryCall<W.BlockSnapshotRequestMsg, W.BlockSnapshotResponseMsg>,
        cb: sendUnaryData<W.BlockSnapshotResponseMsg>,
      ) => {
        // Flushing first makes `seq` cover every event up to this snapshot.
        this.publisher.flush();
        cb(null, {
          worker: opts.instanceId,
          incarnation: this.incarnation,
          seq: this.publisher.seq,
          hashes: opts.engine.pool.cachedHashes(),
        });
      },
    });
    if (opts.kvStore !== undefined) {
      const receiver = this.receiver;
      this.storeLink = new StoreLink(
        opts.engine,
        this.membership,
        this.sender,
        {
          address: () => this.address,
          expect: (id) => this.expectFromStore(id),
          // Gets over tcp are pulled from the store's data port, when this receiver takes tcp.
          puller: receiver?.advertisement().transports.includes('tcp') ? receiver : undefined,
        },
        opts.logger,
        opts.kvStore,
        opts.tls,
      );
      opts.engine.offload(this.storeLink);
    }
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`${host}:${opts.grpcPort ?? 0}`, serverCredentials(opts.tls), (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.address = `${opts.advertiseHost ?? host}:${port}`;
    const dataAddress = await this.sender.listen(); // a taken --data-port fails here, not at the first handoff
    const engine = opts.engine;
    this.registration = await opts.controlPlane.registry.register({
      id: opts.instanceId,
      role: opts.role,
      grpcAddress: this.address,
      adminAddress: opts.adminAddress ?? '',
      model: engine.modelId,
      capacity: { totalBlocks: engine.pool.numBlocks, blockSize: engine.blockSize, maxNumSeqs: engine.maxNumSeqs },
      transfer: this.receiver?.advertisement(),
      dataAddress,
      incarnation: this.incarnation,
      startedAt: Date.now(),
      features: WORKER_FEATURES,
    });
    this.loadTimer = setInterval(() => this.publishLoad(), opts.loadReportIntervalMs ?? LOAD_REPORT_INTERVAL_MS);
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

  /** Incoming transfers expected, and Begins waiting for the request that names them (tests, debugging). */
  get transfersPending(): { readonly expected: number; readonly unclaimed: number } {
    return this.admission?.pending ?? { expected: 0, unclaimed: 0 };
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
  }

  /** Blocks this worker asked a kv-store node to send under `transferId`. */
  private expectFromStore(transferId: string): { readonly arrived: Promise<KvBlock[]>; done(): void } {
    const admission = this.admission;
    if (admission === undefined) throw new Error('this worker has no transfer receiver');
    const e = admission.expect(transferId, STORE_FETCH_MS);
    return { arrived: e.arrived.then((a) => a.blocks), done: e.done };
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

  private track(requestId: string): AbortController {
    const ac = new AbortController();
    this.inFlight.set(requestId, ac);
    return ac;
  }

  private async handleGenerate(call: ServerWritableStream<W.GenerateRequestMsg, W.GenerateChunkMsg>): Promise<void> {
    const req = call.request;
    const ac = this.track(req.request_id);
    call.on('cancelled', () => ac.abort());
    try {
      if (this.draining) throw new EngineError('not_ready', 'worker is draining');
      const sampling = samplingFromWire(req.sampling);
      const plan = req.prefill ?? { mode: 'local', prefill_worker: '', transfer_id: '' };
      if (!['local', 'pushed', 'streamed', 'tail'].includes(plan.mode))
        throw new EngineError('invalid_request', `unknown prefill mode ${JSON.stringify(plan.mode)}`, 'prefill.mode');
      let prefilled: PrefilledKv | undefined;
      let prefilledBy = '';
      // Plan 'tail': the prompt's blocks but its last came into the prefix cache; the usage reports the prefill worker's hits.
      let streamedPrefix: { readonly cachedTokens: number } | undefined;
      // A migrated stream: prefilled here, from whatever of prompt + output the caches hold.
      const resumed = req.resume_output_token_ids ?? [];
      if (resumed.length === 0 && plan.mode !== 'local' && this.admission !== undefined && plan.transfer_id !== '') {
        try {
          const admission = this.admission;
          const engine = this.opts.engine;
          if (plan.mode === 'tail') streamedPrefix = await receiveStreamedPrefix(admission, engine, req, plan.transfer_id, ac.signal);
          else
            prefilled =
              plan.mode === 'streamed'
                ? await receiveStreamedKv(admission, engine, req, plan.transfer_id, ac.signal)
                : await receivePushedKv(admission, engine, req, plan.transfer_id, ac.signal);
          prefilledBy = plan.prefill_worker;
        } catch (err) {
          if (ac.signal.aborted) return;
          this.opts.onTransferFailed?.('in');
          // Prefilled here instead: the same tokens, the first one included (the gateway drops it).
          this.opts.logger.warn(
            { requestId: req.request_id, error: (err as Error).message },
            'pushed prefill did not arrive; prefilling locally',
          );
        }
      }
      const cacheSalt = req.cache_salt ?? '';
      const prefetched =
        prefilled === undefined && streamedPrefix === undefined
          ? await this.storeLink?.prefetch([...req.prompt_token_ids, ...resumed], ac.signal, cacheSalt)
          : undefined;
      if (ac.signal.aborted) return;
      const outputs = this.opts.engine.generate({
        requestId: req.request_id,
        promptTokenIds: req.prompt_token_ids,
        sampling,
        priority: req.priority,
        signal: ac.signal,
        prefilled,
        prefetched,
        cacheSalt,
        resumeOutputTokenIds: resumed,
        serviceTier: serviceTierFromWire(req.service_tier),
      });
      for await (const o of outputs) {
        if (ac.signal.aborted) break;
        const chunk = outputToWire(o, prefilledBy);
        if (streamedPrefix !== undefined) chunk.cached_tokens = streamedPrefix.cachedTokens;
        call.write(chunk);
      }
      call.end();
    } catch (err) {
      this.fail(call, err);
    } finally {
      this.inFlight.delete(req.request_id);
    }
  }

  private async handlePrefill(call: ServerWritableStream<W.PrefillRequestMsg, W.PrefillEventMsg>): Promise<void> {
    const req = call.request;
    const ac = this.track(`prefill:${req.request_id}`);
    call.on('cancelled', () => ac.abort());
    try {
      if (this.draining) throw new EngineError('not_ready', 'worker is draining');
      await this.requireDecodePeer(req.target?.grpc_address ?? ''); // KV goes only to a registered worker
      const deps = { engine: this.opts.engine, sender: this.sender, storeLink: this.storeLink, sendTransport: this.opts.sendTransport };
      const { first, rngState, cachedTokens, receipt, pushSeconds } = await prefillAndPush(deps, req, ac.signal, (f) =>
        call.write({ kind: 'first', first: f }),
      ).catch((err: unknown) => {
        if (!ac.signal.aborted && isTransferError(err)) this.opts.onTransferFailed?.('out');
        throw err;
      });
      this.opts.onTransfer?.('out', receipt.bytes, pushSeconds, receipt.transport);
      call.write({
        kind: 'done',
        done: {
          first_token: first?.first_token ?? 0,
          first_logprob: first?.first_logprob ?? 0,
          first_top: first?.first_top ?? [],
          rng_state: rngState ? [...rngState] : [],
          cached_tokens: cachedTokens,
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

  private fail(call: ServerWritableStream<W.GenerateRequestMsg, W.GenerateChunkMsg>, err: unknown): void {
    if (!(err instanceof EngineError)) this.opts.logger.error({ error: (err as Error).message ?? String(err) }, 'generate failed');
    this.endWithStatus(call, err);
  }

  /** Refuses a Prefill whose target is not a decode or mixed worker registered for this model (no dial). */
  private async requireDecodePeer(address: string): Promise<void> {
    if (address === '') return; // prefillAndPush says what is missing
    if ((await this.registered?.member(address, ['decode', 'mixed'], this.opts.engine.modelId)) === undefined) {
      throw new UnregisteredPeer(`${address} is not a registered decode or mixed worker of model ${this.opts.engine.modelId}`);
    }
  }

  /** Ends a server stream with the gRPC status (and engine error trailers) that `err` maps to. */
  private endWithStatus<Req, Res>(call: ServerWritableStream<Req, Res>, err: unknown): void {
    call.emit('error', err instanceof UnregisteredPeer ? { code: status.PERMISSION_DENIED, details: err.message } : engineErrorStatus(err));
  }
}

/** A request named an address that is no registered peer's: refused before any dial. */
class UnregisteredPeer extends Error {}

/** Longest a worker waits for the blocks it asked a kv-store node for (ms). */
const STORE_FETCH_MS = 30_000;
