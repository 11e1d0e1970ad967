// Global reuse through the kv-store tier, as separate processes on real Redis and NATS: a prefix computed
// on worker A and evicted there is offloaded to the kv-store nodes; worker B then takes it from the store
// instead of computing it. Counters show the store hits and the prefill tokens saved; tokens stay the
// reference's; the gateway's index holds the store's blocks (tier 'store').
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectControlPlane, silentLogger, type ControlPlane } from '@pdserve/control-plane';
import { KvStoreClient } from '@pdserve/kv-store';
import { ensureTinyModel, loadModelSpec, ModelRunner, referenceGenerate, samplingParams, type SamplingParams } from '@pdserve/model';
import { completion, spawnService, startNats, startRedis, waitFor, type ServiceProcess, type TestServer } from '@pdserve/testkit';
import { Tokenizer } from '@pdserve/tokenizer';
import { samplingToWire, WorkerClient } from '@pdserve/worker';

let redis: TestServer;
let nats: TestServer;
let cp: ControlPlane;
let runner: ModelRunner;
let tokenizer: Tokenizer;
const procs = new Map<string, ServiceProcess>();
const clients = new Map<string, WorkerClient>();

async function address(id: string): Promise<string> {
  const rec = (await cp.registry.list()).find((r) => r.id === id);
  if (!rec) throw new Error(`${id} not registered`);
  return rec.grpcAddress;
}

async function worker(id: string): Promise<WorkerClient> {
  let c = clients.get(id);
  if (!c) clients.set(id, (c = new WorkerClient(await address(id))));
  return c;
}

async function generate(id: string, ids: number[], params: SamplingParams): Promise<number[]> {
  const out: number[] = [];
  for await (const chunk of (await worker(id)).generate({
    request_id: `r${Math.random()}`,
    prompt_token_ids: ids,
    sampling: samplingToWire(params),
    priority: 0,
    prefill: null,
  }))
    out.push(...chunk.token_ids);
  return out;
}

async function storeStats(id: string) {
  const c = new KvStoreClient(await address(id));
  try {
    return await c.stats();
  } finally {
    c.close();
  }
}

const prompt = (seed: number, len: number): number[] => [
  1,
  ...Array.from({ length: len - 1 }, (_, i) => 3 + ((seed * 7919 + i * 104729) % 31000)),
];

beforeAll(async () => {
  const dir = await ensureTinyModel();
  [redis, nats] = await Promise.all([startRedis(), startNats()]);
  runner = await ModelRunner.create(loadModelSpec(dir));
  tokenizer = await Tokenizer.fromDir(dir);
  cp = await connectControlPlane({ cluster: 'kvs-e2e', redisUrl: redis.url, natsUrl: nats.url, logger: silentLogger });
  const shared = ['--cluster', 'kvs-e2e', '--redis', redis.url, '--nats', nats.url, '--lease-ttl-ms', '2000', '--log-level', 'warn'];
  const model = ['--model', dir, '--served-model-name', 'tiny'];
  const specs: [string, string, string[], '--port' | '--grpc-port'][] = [
    ['kv-store-0', 'kv-store', [...model, '--memory-bytes', '64M'], '--grpc-port'],
    ['kv-store-1', 'kv-store', [...model, '--memory-bytes', '64M'], '--grpc-port'],
    // 2 MiB of KV: 64 blocks of 16 tokens, so that a few long prompts evict the first one.
    ['A', 'mixed-worker', [...model, '--kv-cache-bytes', '2M', '--transports', 'tcp,grpc'], '--grpc-port'],
    ['B', 'mixed-worker', [...model, '--kv-cache-bytes', '2M', '--transports', 'shm,tcp,grpc'], '--grpc-port'],
    ['gateway', 'gateway', [...model], '--port'],
  ];
  const started = await Promise.all(
    specs.map(([id, cmd, extra, port]) =>
      spawnService(id, cmd, [...shared, ...extra, ...(cmd === 'gateway' ? [] : ['--instance-id', id])], port),
    ),
  );
  started.forEach((s) => procs.set(s.name, s));
  const dump = (): string => started.map((s) => `--- ${s.name}\n${s.output().slice(-2000)}`).join('\n');
  const died = (): boolean => started.some((s) => s.proc.exitCode !== null);
  await waitFor(
    '2 stores and 2 workers registered',
    async () => !died() && (await cp.registry.list()).filter((r) => r.role === 'kv-store' || r.role === 'mixed').length === 4,
    40_000,
  ).catch((e: Error) => Promise.reject(new Error(`${e.message}\n${dump()}`)));
}, 60_000);

afterAll(async () => {
  for (const c of clients.values()) c.close();
  await Promise.all([...procs.values()].map((p) => p.kill()));
  await cp?.close();
  await Promise.all([redis?.stop(), nats?.stop()]);
  await runner?.release();
});

describe('kv-store tier across processes on Redis and NATS', () => {
  it('a prefix computed on A and evicted there is served to B from the store', async () => {
    const params = samplingParams({ temperature: 0, maxTokens: 8, ignoreEos: true });
    const shared = prompt(1, 300); // 18 full blocks; at most 18 x 16 = 288 tokens can come from the store
    const want = (await referenceGenerate(runner, shared, params)).tokenIds;
    expect(await generate('A', shared, params)).toEqual(want);
    // Evict it on A: two long prompts (44 blocks each) need more than the 64 blocks A has.
    await generate('A', prompt(2, 700), samplingParams({ temperature: 0, maxTokens: 1 }));
    await generate('A', prompt(3, 700), samplingParams({ temperature: 0, maxTokens: 1 }));
    await waitFor('A offloaded the evicted prefix', async () => (await (await worker('A')).stats()).store_offloaded_blocks >= 18, 10_000);
    const before = await (await worker('B')).stats();
    const storesBefore = await Promise.all(['kv-store-0', 'kv-store-1'].map(storeStats));
    expect(await generate('B', shared, params)).toEqual(want);
    const after = await (await worker('B')).stats();
    const storesAfter = await Promise.all(['kv-store-0', 'kv-store-1'].map(storeStats));
    expect(after.store_prefetched_blocks - before.store_prefetched_blocks).toBe(18);
    expect(after.prefetched_tokens - before.prefetched_tokens).toBe(288);
    expect(after.prefill_tokens_computed - before.prefill_tokens_computed).toBe(300 - 288);
    const sent = storesAfter.reduce((n, s) => n + s.blocks_sent, 0) - storesBefore.reduce((n, s) => n + s.blocks_sent, 0);
    const hits = storesAfter.reduce((n, s) => n + s.memory!.hits, 0) - storesBefore.reduce((n, s) => n + s.memory!.hits, 0);
    expect(sent).toBe(18);
    expect(hits).toBe(18);
    // Rendezvous placement spreads the blocks over both nodes.
    expect(storesAfter.every((s) => s.memory!.blocks > 0)).toBe(true);
  });

  it('the gateway indexes store-held blocks (tier store) and serves from them token-identically', async () => {
    // Computed on A, then evicted there (offloaded): no worker holds it, the store does, and the router
    // credits it to every worker.
    const evicted = prompt(4, 300);
    const before = (await (await worker('A')).stats()).store_offloaded_blocks;
    await generate('A', evicted, samplingParams({ temperature: 0, maxTokens: 1 }));
    await generate('A', prompt(5, 700), samplingParams({ temperature: 0, maxTokens: 1 }));
    await generate('A', prompt(6, 700), samplingParams({ temperature: 0, maxTokens: 1 }));
    await waitFor('A offloaded it', async () => (await (await worker('A')).stats()).store_offloaded_blocks >= before + 18, 10_000);
    const gw = procs.get('gateway')!;
    await waitFor('gateway ready', async () => (await fetch(`http://127.0.0.1:${gw.port}/ready`)).status === 200, 20_000);
    const res = await fetch(`http://127.0.0.1:${gw.port}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', prompt: evicted, max_tokens: 4, temperature: 0, ignore_eos: true }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { choices: { text: string }[] };
    const want = (await referenceGenerate(runner, evicted, samplingParams({ temperature: 0, maxTokens: 4, ignoreEos: true }))).tokenIds;
    expect(body.choices[0]!.text).toBe(completion(tokenizer, evicted, want));
    const metrics = await (await fetch(`http://127.0.0.1:${gw.adminPort}/metrics`)).text();
    const store = /pdserve_router_prefix_tier_blocks_total\{tier="store"\} (\d+)/.exec(metrics);
    expect(Number(store?.[1] ?? 0)).toBeGreaterThan(0);
  });
});
