// What the gateway knows of the cluster: live workers from the registry, which blocks each holds (KV
// events, resynced from snapshots), and their load. Feeds the router; hands out worker clients.
import type { ControlPlane, KvEventBatch, Membership, ServiceRecord } from '@pdserve/control-plane';
import { isWorkerRole, type Logger, type WorkerRole } from '@pdserve/contracts';
import type { Router, WorkerInfo } from '@pdserve/router';
import { KvStoreClient } from '@pdserve/kv-store/client';
import type { TlsMaterial } from '@pdserve/rpc';
import { toCallError, WorkerClient } from '@pdserve/worker/client';

export interface ClusterViewOptions {
  readonly controlPlane: ControlPlane;
  readonly router: Router;
  /** Only workers serving this model are candidates. */
  readonly model: string;
  readonly logger: Logger;
  /** How often workers whose index entries are untrusted are resynced from snapshots (ms); default 2000. */
  readonly resyncIntervalMs?: number;
  /** mTLS on the channels to workers and kv-store nodes; plaintext without. */
  readonly tls?: TlsMaterial;
}

export class ClusterView {
  private membership: Membership | undefined;
  private readonly records = new Map<string, ServiceRecord & { readonly role: WorkerRole }>();
  /** kv-store nodes: not routable, but what they hold (tier 'store') counts as cached for every worker. */
  private readonly stores = new Map<string, { readonly record: ServiceRecord; readonly client: KvStoreClient }>();
  private readonly clients = new Map<string, WorkerClient>();
  private readonly resyncing = new Set<string>();
  /**
   * Workers still in the registry that could not be reached (a crash leaves its entry until the lease
   * expires): not routed to until a snapshot from them succeeds again (tried every tick).
   */
  private readonly unreachable = new Set<string>();
  private readonly unsubscribe: (() => void)[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** Resolved by the first sync that finds a worker able to decode (see serving()). */
  private readonly servingNow: { promise: Promise<void>; resolve: () => void };

  constructor(private readonly opts: ClusterViewOptions) {
    let resolve = (): void => undefined;
    const promise = new Promise<void>((r) => (resolve = r));
    this.servingNow = { promise, resolve };
  }

  /** Resolves once a worker that can decode has joined: from then on a completion can be served. */
  serving(): Promise<void> {
    return this.servingNow.promise;
  }

  async start(): Promise<void> {
    const { controlPlane, router } = this.opts;
    const kv = controlPlane.events.subscribeKv((b) => this.onKv(b));
    const load = controlPlane.events.subscribeLoad((r) => {
      if (this.records.has(r.worker)) router.reportLoad(r);
    });
    this.unsubscribe.push(
      () => kv.unsubscribe(),
      () => load.unsubscribe(),
    );
    // Events missed while NATS was away are recovered from snapshots.
    this.unsubscribe.push(controlPlane.events.onStatus((s) => s === 'connected' && this.resyncAll()));
    this.membership = await controlPlane.registry.watch();
    this.unsubscribe.push(this.membership.onChange(() => this.sync()));
    this.sync();
    this.timer = setInterval(() => this.tick(), this.opts.resyncIntervalMs ?? 2000);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    for (const u of this.unsubscribe) u();
    this.membership?.close();
    for (const c of this.clients.values()) c.close();
    for (const s of this.stores.values()) s.client.close();
  }

  /** Workers the router may choose from now: registered, and not found unreachable since. */
  workers(): WorkerInfo[] {
    return [...this.records.values()].filter((r) => !this.unreachable.has(r.id)).map((r) => ({ id: r.id, role: r.role }));
  }

  /**
   * A call could not reach this worker (connection refused or reset): take it out of routing until a
   * snapshot from it succeeds, so that no other request is sent there meanwhile.
   */
  markUnreachable(id: string): void {
    if (!this.records.has(id) || this.unreachable.has(id)) return;
    this.unreachable.add(id);
    this.opts.logger.warn({ worker: id }, 'worker unreachable; not routed to until it answers');
    this.opts.router.setWorkers(this.workers());
    void this.resync(id);
  }

  hasDecodeWorker(): boolean {
    return [...this.records.values()].some((r) => r.role !== 'prefill');
  }

  record(id: string): ServiceRecord | undefined {
    return this.records.get(id);
  }

  client(id: string): WorkerClient {
    const rec = this.records.get(id);
    if (!rec) throw new Error(`worker ${id} left the cluster`);
    let c = this.clients.get(rec.grpcAddress);
    if (!c) {
      c = new WorkerClient(rec.grpcAddress, this.opts.tls);
      this.clients.set(rec.grpcAddress, c);
    }
    return c;
  }

  /** Applies the registry's membership: new workers get a snapshot, departed ones leave the index. */
  private sync(): void {
    const live = this.membership!.snapshot();
    for (const [id, prev] of this.records) {
      const now = live.get(id);
      if (!now || now.incarnation !== prev.incarnation) {
        this.records.delete(id);
        this.unreachable.delete(id);
        this.opts.router.removeHolder(id);
        this.clients.get(prev.grpcAddress)?.close();
        this.clients.delete(prev.grpcAddress);
        this.opts.logger.info({ worker: id, role: prev.role }, 'worker left');
      }
    }
    this.syncStores(live);
    for (const [id, rec] of live) {
      const role = rec.role;
      if (this.records.has(id) || !isWorkerRole(role) || rec.model !== this.opts.model) continue;
      this.records.set(id, { ...rec, role });
      this.opts.logger.info({ worker: id, role: rec.role, address: rec.grpcAddress }, 'worker joined');
      void this.resync(id);
    }
    this.opts.router.setWorkers(this.workers());
    if (this.hasDecodeWorker()) this.servingNow.resolve();
  }

  /** kv-store nodes come and go like workers; each one's event stream is its own index holder. */
  private syncStores(live: ReadonlyMap<string, ServiceRecord>): void {
    for (const [id, s] of this.stores) {
      const now = live.get(id);
      if (now && now.incarnation === s.record.incarnation) continue;
      this.stores.delete(id);
      this.opts.router.removeHolder(id);
      s.client.close();
      this.opts.logger.info({ node: id }, 'kv-store left');
    }
    for (const [id, rec] of live) {
      if (rec.role !== 'kv-store' || this.stores.has(id) || (rec.model !== '*' && rec.model !== this.opts.model)) continue;
      this.stores.set(id, { record: rec, client: new KvStoreClient(rec.grpcAddress, this.opts.tls) });
      this.opts.logger.info({ node: id, address: rec.grpcAddress }, 'kv-store joined');
      void this.resync(id);
    }
  }

  private onKv(batch: KvEventBatch): void {
    if (!this.records.has(batch.worker) && !this.stores.has(batch.worker)) return;
    if (this.opts.router.applyKvBatch(batch) === 'gap') void this.resync(batch.worker);
  }

  private tick(): void {
    for (const id of this.opts.router.holdersNeedingSnapshot()) if (this.records.has(id) || this.stores.has(id)) void this.resync(id);
    for (const id of [...this.records.keys(), ...this.stores.keys()])
      if (this.opts.router.needsSnapshot(id) || this.unreachable.has(id)) void this.resync(id);
    if (this.opts.controlPlane.events.status !== 'connected') void this.pollLoads();
  }

  private resyncAll(): void {
    for (const id of [...this.records.keys(), ...this.stores.keys()]) void this.resync(id);
  }

  /** Rebuilds one worker's index entries from its own snapshot (the index replays newer buffered events). */
  private async resync(id: string): Promise<void> {
    if (this.resyncing.has(id)) return;
    this.resyncing.add(id);
    try {
      const store = this.stores.get(id);
      if (store !== undefined) {
        const snap = await store.client.snapshot();
        if (!this.stores.has(id)) return;
        const hashes = snap.groups.filter((g) => g.model_id === this.opts.model).flatMap((g) => g.hashes);
        this.opts.router.applySnapshot(
          id,
          snap.incarnation,
          snap.seq,
          hashes.map((hash) => ({ hash, tier: 'store' as const })),
        );
        return;
      }
      const snap = await this.client(id).snapshot();
      if (!this.records.has(id)) return;
      this.opts.router.applySnapshot(
        id,
        snap.incarnation,
        snap.seq,
        snap.hashes.map((hash) => ({ hash, tier: 'device' as const })),
      );
      if (this.unreachable.delete(id)) {
        this.opts.logger.info({ worker: id }, 'worker reachable again');
        this.opts.router.setWorkers(this.workers());
      }
    } catch (err) {
      this.opts.logger.debug({ worker: id, error: (err as Error).message }, 'snapshot failed');
      if (this.records.has(id) && toCallError(err).code === 'UNAVAILABLE') this.markUnreachable(id);
    } finally {
      this.resyncing.delete(id);
    }
  }

  /** Without NATS there are no load reports: ask the workers directly. */
  private async pollLoads(): Promise<void> {
    await Promise.all(
      [...this.records.keys()].map(async (id) => {
        try {
          const s = await this.client(id).stats();
          this.opts.router.reportLoad({
            worker: id,
            running: s.running,
            waiting: s.waiting,
            freeBlocks: s.free_blocks,
            totalBlocks: s.total_blocks,
            queuedPrefillTokens: s.queued_prefill_tokens,
            ts: Date.now(),
          });
        } catch {
          // A dead worker leaves through its lease.
        }
      }),
    );
  }
}
