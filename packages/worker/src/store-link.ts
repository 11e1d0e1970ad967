// A worker's link to the kv-store tier: evicted blocks are offloaded through a bounded queue (a full queue
// drops offloads; decoding never waits), each on `replicas` distinct store nodes chosen by rendezvous
// hashing; on admission, the uncached part of a prompt's prefix is looked up on the store nodes and the
// leading run they hold is fetched through the transfer engine.
import type { Logger, Membership, ServiceRecord } from '@pdserve/control-plane';
import type { OffloadSink, PrefetchedKv } from '@pdserve/contracts';
import type { LLMEngine } from '@pdserve/engine';
import { blocksBeforeLastToken, chainHashes } from '@pdserve/kv-cache';
import { KvStoreClient, placeReplicas, type PullingReceiver } from '@pdserve/kv-store';
import type { TlsMaterial } from '@pdserve/rpc';
import type { KvBlock, TransferSender, TransportKind } from '@pdserve/transfer';

export interface StoreLinkOptions {
  /** Copies of each offloaded block, on distinct kv-store nodes (fewer when fewer nodes live). */
  readonly replicas?: number;
  /** Evicted blocks waiting to be offloaded; past it, offloads are dropped. */
  readonly maxQueuedBlocks?: number;
  /** Blocks per put. */
  readonly batchBlocks?: number;
  /** A prompt with fewer uncached full blocks than this is not looked up in the store. */
  readonly minPrefetchBlocks?: number;
  /** Transport for puts and gets ('auto': the receiver's preferred usable one). */
  readonly transport?: 'auto' | TransportKind;
}

export const STORE_LINK_DEFAULTS = { replicas: 1, maxQueuedBlocks: 512, batchBlocks: 64, minPrefetchBlocks: 1 } as const;

export interface StoreLinkStats {
  readonly offloadedBlocks: number;
  /** Offloads dropped because the queue was full, or lost to a failed put. */
  readonly offloadDropped: number;
  readonly prefetchLookups: number;
  /** Blocks fetched from the store. */
  readonly prefetchedBlocks: number;
}

/** The receiving side the link fetches into: the worker's transfer receiver. */
export interface TransferSink {
  readonly address: () => string;
  /** Registers a transfer id; `arrived` resolves with its blocks (copies), `done` forgets it. */
  expect(transferId: string): { readonly arrived: Promise<KvBlock[]>; done(): void };
  /**
   * The receiver's pulls (TransferReceiver.pull, prepare, cancel); present when the receiver takes tcp. With
   * it, a get over 'auto' or 'tcp' is pulled (KvStoreClient.pull): no Transfer call from the store, and the
   * pull pipelined with the Get when the store's record names its data port.
   */
  readonly puller?: PullingReceiver;
}

export class StoreLink implements OffloadSink {
  private readonly opts: Required<StoreLinkOptions>;
  private readonly clients = new Map<string, KvStoreClient>();
  private readonly queue = new Map<string, Uint8Array>();
  /** Hashes recently put or fetched: offloading them again would only be refused as already stored. */
  private readonly known = new Map<string, true>();
  private draining = false;
  private nextId = 0;
  private counters = { offloadedBlocks: 0, offloadDropped: 0, prefetchLookups: 0, prefetchedBlocks: 0 };

  constructor(
    private readonly engine: LLMEngine,
    private readonly membership: Membership,
    private readonly sender: TransferSender,
    private readonly sink: TransferSink,
    private readonly logger: Logger,
    options: StoreLinkOptions = {},
    /** mTLS on the channels to kv-store nodes. */
    private readonly tls?: TlsMaterial,
  ) {
    this.opts = {
      ...STORE_LINK_DEFAULTS,
      transport: 'auto',
      ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)),
    };
  }

  stats(): StoreLinkStats {
    return { ...this.counters };
  }

  /** Live kv-store nodes, by id. */
  nodes(): ServiceRecord[] {
    return [...this.membership.snapshot().values()].filter(
      (r) => r.role === 'kv-store' && (r.model === '*' || r.model === this.engine.modelId),
    );
  }

  offer(hash: string, encode: () => Uint8Array): void {
    if (this.known.has(hash) || this.queue.has(hash)) return;
    if (this.queue.size >= this.opts.maxQueuedBlocks) {
      this.counters.offloadDropped += 1;
      return;
    }
    if (this.nodes().length === 0) return;
    this.queue.set(hash, encode());
    void this.drain();
  }

  /** Resolves when the offload queue is empty (tests, shutdown). */
  async flushed(): Promise<void> {
    while (this.queue.size > 0 || this.draining) await new Promise((r) => setTimeout(r, 5));
  }

  /**
   * The leading blocks of `tokens`' uncached prefix that the store holds, fetched; undefined when none.
   * `cacheSalt` roots the chain as the request's does (store keys are the salted hashes). Never throws: any
   * failure just means less is prefetched (and more is computed).
   */
  async prefetch(tokens: readonly number[], signal?: AbortSignal, cacheSalt = ''): Promise<PrefetchedKv | undefined> {
    const nodes = this.nodes();
    if (nodes.length === 0) return undefined;
    const bs = this.engine.blockSize;
    const chain = chainHashes(tokens, bs, this.engine.modelId, cacheSalt).slice(0, blocksBeforeLastToken(tokens.length, bs));
    const from = Math.min(this.engine.cachedPrefixBlocks(tokens, cacheSalt), chain.length);
    const want = chain.slice(from);
    if (want.length < this.opts.minPrefetchBlocks) return undefined;
    this.counters.prefetchLookups += 1;
    const model = this.engine.modelId;
    const answers = await Promise.all(
      nodes.map((n) =>
        this.client(n)
          .exists(model, want, signal)
          .then(
            (r) => r.tiers,
            () => undefined,
          ),
      ),
    );
    // Per block, the nodes that hold it: memory before disk; the run ends at the first block nobody holds.
    const holders: ServiceRecord[][] = [];
    for (let run = 0; run < want.length; run++) {
      const mem = nodes.filter((_, n) => answers[n]?.[run] === 'memory');
      const disk = nodes.filter((_, n) => answers[n]?.[run] === 'disk');
      if (mem.length + disk.length === 0) break;
      holders.push([...mem, ...disk]);
    }
    const run = holders.length;
    if (run === 0) return undefined;
    const got = new Map<string, KvBlock>();
    // A node that fails mid-get (died, say) leaves its blocks to the next replica that holds them; what no
    // replica delivers is computed.
    for (let round = 0; ; round++) {
      const byNode = new Map<ServiceRecord, string[]>();
      want.slice(0, run).forEach((h, i) => {
        const node = holders[i]![round];
        if (got.has(h) || node === undefined) return;
        byNode.set(node, [...(byNode.get(node) ?? []), h]);
      });
      if (byNode.size === 0 || signal?.aborted === true) break;
      await Promise.all(
        [...byNode].map(async ([node, hashes]) => {
          for (const b of await this.fetch(node, hashes, signal)) got.set(b.hash, b);
        }),
      );
    }
    const blocks: Uint8Array[] = [];
    const checksums: (number | undefined)[] = [];
    for (const h of want.slice(0, run)) {
      const b = got.get(h);
      if (b === undefined) break;
      blocks.push(b.data);
      checksums.push(b.checksum);
      this.remember(h);
    }
    this.counters.prefetchedBlocks += blocks.length;
    return blocks.length === 0 ? undefined : { fromBlock: from, blocks, checksums };
  }

  close(): void {
    this.queue.clear();
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  private async fetch(node: ServiceRecord, hashes: string[], signal?: AbortSignal, retried = false): Promise<KvBlock[]> {
    const transferId = `kvget-${process.pid}-${++this.nextId}-${Date.now().toString(36)}`;
    const expected = this.sink.expect(transferId);
    expected.arrived.catch(() => undefined); // a failed transfer is also the get's failure, reported there
    try {
      const req = {
        model_id: this.engine.modelId,
        hashes,
        lease_ms: 0,
        sink: { grpc_address: this.sink.address(), transfer_id: transferId, transport: this.opts.transport },
        verify: retried, // after a block failed its check here, the store checks its memory blocks too
      };
      const puller = this.sink.puller;
      if (puller !== undefined && (this.opts.transport === 'auto' || this.opts.transport === 'tcp')) {
        // Pulled: the reply is the offer; once the pull is admitted the blocks are in (the receiver's onTransfer).
        const reply = await this.client(node).pull(puller, req, { signal, source: node.dataAddress });
        return reply.blocks === 0 ? [] : await expected.arrived;
      }
      const reply = this.client(node).get(req, signal);
      // The blocks, all in and verified, are the answer: the reply (sent once the store hears they were
      // admitted) adds nothing, so it is not waited for. Without them the reply says why: none held, or an
      // error (a transfer this side refused, say for a bad checksum, comes back as the store's DATA_LOSS).
      const arrived = expected.arrived.catch(() => new Promise<never>(() => undefined));
      const first = await Promise.race([reply, arrived]);
      if (Array.isArray(first)) {
        reply.catch(() => undefined);
        return first;
      }
      return first.blocks === 0 ? [] : await expected.arrived;
    } catch (err) {
      // A block failed its checksum here: pushed, the store dropped what was corrupt there (DATA_LOSS); pulled
      // (CHECKSUM_MISMATCH), the next get asks it to check (verify). Either way the next get reports it
      // missing and sends the rest.
      const code = (err as { code?: unknown }).code;
      if ((code === 'DATA_LOSS' || code === 'CHECKSUM_MISMATCH') && !retried && signal?.aborted !== true) {
        this.logger.warn({ node: node.id, error: (err as Error).message }, 'kv-store get: a block failed its checksum; getting again');
        return this.fetch(node, hashes, signal, true);
      }
      this.logger.warn({ node: node.id, error: (err as Error).message }, 'kv-store get failed; those blocks will be computed');
      return [];
    } finally {
      expected.done();
    }
  }

  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.queue.size > 0) {
        const batch: KvBlock[] = [];
        for (const [hash, data] of this.queue) {
          batch.push({ hash, data });
          this.queue.delete(hash);
          if (batch.length >= this.opts.batchBlocks) break;
        }
        const nodes = this.nodes();
        const ids = nodes.map((n) => n.id);
        const perNode = new Map<string, KvBlock[]>();
        for (const b of batch) {
          for (const id of placeReplicas(b.hash, ids, this.opts.replicas)) {
            const list = perNode.get(id) ?? [];
            list.push(b);
            perNode.set(id, list);
          }
        }
        const ok = new Set<string>();
        await Promise.all(
          [...perNode].map(async ([id, blocks]) => {
            try {
              await this.client(nodes.find((n) => n.id === id)!).put(this.sender, this.engine.modelId, blocks, {
                transport: this.opts.transport,
              });
              for (const b of blocks) ok.add(b.hash);
            } catch (err) {
              this.logger.warn(
                { node: id, blocks: blocks.length, error: (err as Error).message },
                'kv-store offload failed; blocks dropped',
              );
            }
          }),
        );
        for (const b of batch) {
          if (ok.has(b.hash)) {
            this.counters.offloadedBlocks += 1;
            this.remember(b.hash);
          } else this.counters.offloadDropped += 1;
        }
      }
    } finally {
      this.draining = false;
    }
  }

  private remember(hash: string): void {
    this.known.delete(hash);
    this.known.set(hash, true);
    if (this.known.size > 65_536) this.known.delete(this.known.keys().next().value!);
  }

  private client(node: ServiceRecord): KvStoreClient {
    let c = this.clients.get(node.grpcAddress);
    if (c === undefined) {
      c = new KvStoreClient(node.grpcAddress, this.tls);
      this.clients.set(node.grpcAddress, c);
    }
    return c;
  }
}
