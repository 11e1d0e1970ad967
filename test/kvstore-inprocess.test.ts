// The correctness contract through the kv-store tier, in one process (embedded control plane, gRPC and the
// transfer engine over loopback): a prefix computed on worker A and evicted there comes back to worker B
// from the store's memory tier, from its disk tier (after a restart), from a replica after the primary was
// killed, and a block corrupted on disk or in the store's memory is detected and recomputed: the tokens are
// always the reference's.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectControlPlane, InProcessHub, silentLogger, type ControlPlane } from '@pdserve/control-plane';
import { chainHashes } from '@pdserve/kv-cache';
import { InProcessBlockDirectory, KvStoreClient, startKvStoreService, type KvStoreService } from '@pdserve/kv-store';
import { silentLogger as apiSilent } from '@pdserve/api';
import { startGateway, type Gateway } from '@pdserve/gateway';
import { ensureTinyModel, loadModelSpec, ModelRunner, referenceGenerate, samplingParams, type SamplingParams } from '@pdserve/model';
import { waitFor } from '@pdserve/testkit';
import { samplingToWire, startWorkerService, WorkerClient, type WorkerService } from '@pdserve/worker';

let dir: string;
let runner: ModelRunner;
let cp: ControlPlane;
let a: WorkerService;
let b: WorkerService;
let gateway: Gateway;
const stores = new Map<string, KvStoreService>();
const diskDirs = new Map<string, string>();
const directory = new InProcessBlockDirectory();
const clients = new Map<string, WorkerClient>();

const GREEDY = samplingParams({ temperature: 0, maxTokens: 8, ignoreEos: true });
const SEEDED = samplingParams({ temperature: 0.9, seed: 17, maxTokens: 8, ignoreEos: true });
/** 6 full blocks of 16 and 4 tokens more: at most 96 prompt tokens can come from the store. */
const prompt = (seed: number): number[] => [1, ...Array.from({ length: 99 }, (_, i) => 3 + ((seed * 7919 + i * 104729) % 31000))];

async function startStore(id: string): Promise<KvStoreService> {
  const disk = diskDirs.get(id) ?? mkdtempSync(join(tmpdir(), `pdserve-${id}-`));
  diskDirs.set(id, disk);
  const s = await startKvStoreService({
    nodeId: id,
    controlPlane: cp,
    logger: silentLogger,
    memoryBytes: 16 << 20,
    diskBytes: 64 << 20,
    diskDir: disk,
    directory,
    models: [{ id: 'tiny', layout: a.engine.layout }],
  });
  stores.set(id, s);
  return s;
}

async function generate(w: WorkerService, ids: number[], params: SamplingParams): Promise<number[]> {
  let c = clients.get(w.grpcAddress);
  if (!c) clients.set(w.grpcAddress, (c = new WorkerClient(w.grpcAddress)));
  const out: number[] = [];
  for await (const chunk of c.generate({
    request_id: `r${Math.random()}`,
    prompt_token_ids: ids,
    sampling: samplingToWire(params),
    priority: 0,
    prefill: null,
  }))
    out.push(...chunk.token_ids);
  return out;
}

/** Computes `ids` on A, evicts it there (offloading to the store), then serves it on B. */
async function throughStore(ids: number[], params: SamplingParams, before?: () => Promise<void>) {
  await generate(a, ids, params);
  a.engine.pool.evictFree();
  await a.server.kvStore!.flushed();
  await before?.();
  const s0 = b.engine.stats();
  const out = await generate(b, ids, params);
  const s1 = b.engine.stats();
  b.engine.pool.evictFree();
  await b.server.kvStore!.flushed();
  return {
    out,
    ref: (await referenceGenerate(runner, ids, params)).tokenIds,
    prefetched: s1.prefetchedTokens - s0.prefetchedTokens,
    computed: s1.prefillTokensComputed - s0.prefillTokensComputed,
    rejects: s1.prefetchRejects - s0.prefetchRejects,
  };
}

beforeAll(async () => {
  dir = await ensureTinyModel();
  runner = await ModelRunner.create(loadModelSpec(dir));
  cp = await connectControlPlane({ cluster: 'kvstore', hub: new InProcessHub(), logger: silentLogger });
  const engine = { modelDir: dir, modelId: 'tiny', kvCacheBytes: 8 * 1024 * 1024 };
  [a, b] = await Promise.all(
    ['A', 'B'].map((id) =>
      startWorkerService({ role: 'mixed', instanceId: id, engine, controlPlane: cp, logger: silentLogger, kvStore: { replicas: 2 } }),
    ),
  );
  await startStore('store-0');
  await startStore('store-1');
  gateway = await startGateway({ modelDir: dir, modelId: 'tiny', controlPlane: cp, logger: apiSilent, port: 0 });
  await waitFor(
    'workers see both stores',
    () => a.server.kvStore!.nodes().length === 2 && b.server.kvStore!.nodes().length === 2,
    10_000,
    20,
  );
}, 60_000);

afterAll(async () => {
  for (const c of clients.values()) c.close();
  await gateway?.close();
  await Promise.all([a?.close(), b?.close()]);
  await Promise.all([...stores.values()].map((s) => s.close()));
  await cp?.close();
  await runner?.release();
  for (const d of diskDirs.values()) rmSync(d, { recursive: true, force: true });
});

describe('the kv-store tier keeps output token-identical', () => {
  it('from the memory tier: greedy and seeded, with the prefix not computed on B', async () => {
    for (const [i, params] of [GREEDY, SEEDED].entries()) {
      const r = await throughStore(prompt(100 + i), params);
      expect(r.out).toEqual(r.ref);
      expect(r.prefetched).toBe(96);
      expect(r.computed).toBe(4);
    }
    const memHits = [...stores.values()].reduce((n, s) => n + s.store.stats().memory.hits, 0);
    expect(memHits).toBeGreaterThanOrEqual(12);
    // Two replicas: every offloaded block is on both nodes.
    for (const s of stores.values()) expect(s.store.stats().memory.blocks).toBeGreaterThanOrEqual(12);
    expect(a.server.kvStore!.stats().offloadedBlocks).toBeGreaterThanOrEqual(12);
    // The gateway's index credits the store-held prefix to every worker (tier 'store', named credit).
    const chain = chainHashes(prompt(100), 16, 'tiny');
    await waitFor('gateway indexed the store-held blocks', () => gateway.router.matchPrefix(chain).storeBlocks === 6, 5_000, 20);
  });

  it('from the disk tier, after the store nodes restarted from their folders', async () => {
    const ids = prompt(200);
    const r = await throughStore(ids, SEEDED, async () => {
      for (const id of ['store-0', 'store-1']) {
        await stores.get(id)!.close(); // flushes memory to disk
        await startStore(id);
      }
      await waitFor(
        'workers see the restarted stores',
        () => a.server.kvStore!.nodes().length === 2 && b.server.kvStore!.nodes().length === 2,
        10_000,
        20,
      );
    });
    expect(r.out).toEqual(r.ref);
    expect(r.prefetched).toBe(96);
    const diskHits = [...stores.values()].reduce((n, s) => n + s.store.stats().disk.hits, 0);
    expect(diskHits).toBeGreaterThanOrEqual(6);
    expect(r.computed).toBe(4);
  });

  it('from the replica when the node asked first fails mid-get (it had said it holds the blocks)', async () => {
    const ids = prompt(400);
    const get = KvStoreClient.prototype.get;
    let failed = 0;
    try {
      const r = await throughStore(ids, GREEDY, async () => {
        KvStoreClient.prototype.get = function (this: KvStoreClient, ...args: Parameters<typeof get>) {
          if (failed++ === 0) return Promise.reject(Object.assign(new Error('connection reset mid-get'), { code: 'UNAVAILABLE' }));
          return get.apply(this, args);
        };
      });
      expect(failed).toBeGreaterThanOrEqual(2);
      expect(r.out).toEqual(r.ref);
      expect(r.prefetched).toBe(96);
      expect(r.computed).toBe(4);
    } finally {
      KvStoreClient.prototype.get = get;
    }
  });

  it('from a replica after the primary was killed', async () => {
    const ids = prompt(300);
    const r = await throughStore(ids, GREEDY, async () => {
      await stores.get('store-0')!.close();
      stores.delete('store-0');
      await waitFor('store-0 gone', () => b.server.kvStore!.nodes().length === 1, 10_000, 20);
    });
    expect(r.out).toEqual(r.ref);
    expect(r.prefetched).toBe(96);
    expect(r.computed).toBe(4);
  });

  it('a block corrupted on the disk is detected, never served, and recomputed', async () => {
    const ids = prompt(400);
    const s1 = stores.get('store-1')!;
    const r = await throughStore(ids, GREEDY, async () => {
      // Push every block to disk by restarting, then corrupt one file of this prompt (its third block).
      await s1.close();
      const s = await startStore('store-1');
      await waitFor('restarted store seen', () => b.server.kvStore!.nodes().length === 1, 10_000, 20);
      const snap = await new KvStoreClient(s.grpcAddress).snapshot();
      expect(snap.groups.every((g) => g.tier === 'disk')).toBe(true);
      expect(b.engine.pool.cachedHashes()).toEqual([]); // B holds nothing of this prompt
      const files = readdirSync(diskDirs.get('store-1')!, { recursive: true, encoding: 'utf8' });
      const victim = chainHashes(ids, 16, 'tiny')[2]!;
      const file = files.find((f) => f.includes(victim))!;
      const path = join(diskDirs.get('store-1')!, file);
      const bytes = readFileSync(path);
      bytes[bytes.length - 100]! ^= 0xff;
      writeFileSync(path, bytes);
    });
    expect(r.out).toEqual(r.ref);
    expect(r.prefetched).toBe(32); // blocks 0 and 1; the chain stops at the corrupt block
    expect(r.computed).toBe(100 - 32);
    expect(stores.get('store-1')!.store.stats().disk.corruptDropped).toBe(1);
  });

  it("a block corrupted in the store's memory is caught at the reader, dropped there, and recomputed", async () => {
    const ids = prompt(500);
    const s1 = stores.get('store-1')!;
    const before = s1.store.stats().memory.corruptDropped;
    const r = await throughStore(ids, SEEDED, async () => {
      // The store's own buffer, as a get that leaves the check to the reader hands it out: this corrupts it.
      const victim = chainHashes(ids, 16, 'tiny')[2]!;
      const held = await s1.store.get('tiny', [victim], { verifyMemory: false });
      expect(held.blocks[0]?.tier).toBe('memory');
      held.blocks[0]!.bytes[200]! ^= 0xff;
      s1.store.releaseLease(held.leaseId!);
    });
    expect(r.out).toEqual(r.ref);
    expect(r.prefetched).toBe(32); // the first get failed at B's transfer engine; the second stops at the dropped block
    expect(r.computed).toBe(100 - 32);
    expect(s1.store.stats().memory.corruptDropped).toBe(before + 1);
  });
});
