// Attack suite, inside the cluster: a disaggregated cluster in one process (embedded control plane, real
// gRPC and transfers over loopback; gateway with API keys and caches isolated per key, a prefill worker, a
// decode worker, a kv-store node). Tenants never get a cache hit on each other's prompts — not on a worker,
// not through the kv-store — while output stays token-identical to the reference loop; crafted sampling
// values sent straight to a worker's gRPC port are refused with INVALID_ARGUMENT, leak nothing and crash
// nothing.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@pdserve/api';
import { connectControlPlane, InProcessHub, silentLogger as cpSilent, type ControlPlane } from '@pdserve/control-plane';
import { startGateway, type Gateway } from '@pdserve/gateway';
import { startKvStoreService, type KvStoreService } from '@pdserve/kv-store';
import { ensureTinyModel, loadModelSpec, ModelRunner, referenceGenerate, samplingParams } from '@pdserve/model';
import { Tokenizer } from '@pdserve/tokenizer';
import { completion, waitFor } from '@pdserve/testkit';
import {
  samplingToWire,
  toCallError,
  WorkerClient,
  startWorkerService,
  type GenerateRequestMsg,
  type SamplingParamsMsg,
  type WorkerService,
} from '@pdserve/worker';

const KEY_A = 'sk-tenant-a-0123456789abcdef';
const KEY_B = 'sk-tenant-b-0123456789abcdef';

let dir: string;
let runner: ModelRunner;
let tokenizer: Tokenizer;
let cp: ControlPlane;
let store: KvStoreService;
let prefill: WorkerService;
let decode: WorkerService;
let gateway: Gateway;
const clients: WorkerClient[] = [];

beforeAll(async () => {
  dir = await ensureTinyModel();
  runner = await ModelRunner.create(loadModelSpec(dir));
  tokenizer = await Tokenizer.fromDir(dir);
  cp = await connectControlPlane({ cluster: 'attack-tenants', hub: new InProcessHub(), logger: cpSilent });
  store = await startKvStoreService({
    nodeId: 'kv-0',
    controlPlane: cp,
    logger: cpSilent,
    memoryBytes: 32 << 20,
    models: [{ id: 'tiny' }],
  });
  const engine = { modelDir: dir, modelId: 'tiny', kvCacheBytes: 64 << 20 };
  prefill = await startWorkerService({
    role: 'prefill',
    instanceId: 'p0',
    engine,
    controlPlane: cp,
    logger: cpSilent,
    kvStore: { replicas: 1 },
  });
  decode = await startWorkerService({
    role: 'decode',
    instanceId: 'd0',
    engine,
    controlPlane: cp,
    logger: cpSilent,
    kvStore: { replicas: 1 },
  });
  gateway = await startGateway({
    modelDir: dir,
    modelId: 'tiny',
    controlPlane: cp,
    logger: silentLogger,
    port: 0,
    // Every prompt is prefilled on the prefill worker and its KV pushed to the decode worker.
    disagg: { remotePrefillMinTokens: 1 },
    edge: { apiKeys: [KEY_A, KEY_B], isolateCachePerKey: true },
  });
  await gateway.ready();
  await waitFor(
    'both workers see the kv-store',
    () => prefill.server.kvStore!.nodes().length === 1 && decode.server.kvStore!.nodes().length === 1,
    10_000,
    20,
  );
}, 120_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await gateway?.close();
  await Promise.all([prefill?.close(), decode?.close()]);
  await store?.close();
  await cp?.close();
  await runner?.release();
});

const client = (apiKey: string): OpenAI => new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey, maxRetries: 0 });
const PROMPT = 'Tenant isolation: the same long prompt, sent by two tenants, must never share a cached block. '.repeat(2);

async function complete(apiKey: string, prompt: string, extra: Record<string, unknown> = {}): Promise<{ text: string; cached: number }> {
  const res = await client(apiKey).completions.create({ model: 'tiny', prompt, max_tokens: 8, temperature: 0, ...extra });
  return { text: res.choices[0]!.text, cached: res.usage?.prompt_tokens_details?.cached_tokens ?? -1 };
}

async function reference(prompt: string): Promise<string> {
  const ids = tokenizer.encode(prompt);
  return completion(
    tokenizer,
    ids,
    (await referenceGenerate(runner, ids, samplingParams({ temperature: 0, maxTokens: 8, stopTokenIds: tokenizer.eosTokenIds }))).tokenIds,
  );
}

function worker(w: WorkerService): WorkerClient {
  const c = new WorkerClient(w.grpcAddress);
  clients.push(c);
  return c;
}

async function tokensOf(c: WorkerClient, req: GenerateRequestMsg): Promise<number[]> {
  const out: number[] = [];
  for await (const chunk of c.generate(req)) out.push(...chunk.token_ids);
  return out;
}

async function idle(w: WorkerService): Promise<void> {
  await waitFor(
    `${w.instanceId} idle`,
    () => {
      const s = w.engine.stats();
      return s.usedBlocks === 0 && s.running === 0 && s.waiting === 0;
    },
    10_000,
    20,
  );
}

describe('tenants through the gateway (disaggregated, caches isolated per API key)', () => {
  it("tenant B gets no cache hit on tenant A's prompt (0 cached tokens), each tenant hits its own, and the tokens are the reference's", async () => {
    const want = await reference(PROMPT);
    const computed0 = decode.engine.stats().prefillTokensComputed;
    const a1 = await complete(KEY_A, PROMPT);
    const b1 = await complete(KEY_B, PROMPT);
    const a2 = await complete(KEY_A, PROMPT);
    const b2 = await complete(KEY_B, PROMPT);
    expect([a1, b1, a2, b2].map((r) => r.text)).toEqual([want, want, want, want]);
    expect(a1.cached).toBe(0);
    expect(b1.cached).toBe(0); // A's blocks are on both workers, under A's salt only
    expect(a2.cached).toBeGreaterThan(0);
    expect(b2.cached).toBeGreaterThan(0);
    // The prefill worker exported under the salted chain: the decode worker took every block it sent, and computed
    // only the block holding the last prompt token of each request itself (--decode-computes-tail).
    const n = tokenizer.encode(PROMPT).length;
    expect(decode.engine.stats().prefillTokensComputed - computed0).toBe(4 * (n - Math.floor((n - 1) / 16) * 16));
    expect(decode.engine.stats().importFallbacks).toBe(0);
  });

  it('within a tenant, a different cache_salt is a different cache; the same one hits', async () => {
    const prompt = `${PROMPT} With a salt.`;
    const plain = await complete(KEY_A, prompt);
    const salted = await complete(KEY_A, prompt, { cache_salt: 'project-x' });
    const again = await complete(KEY_A, prompt, { cache_salt: 'project-x' });
    expect(salted.text).toBe(plain.text); // greedy identity holds with a salt; only sharing differs
    expect(salted.cached).toBe(0);
    expect(again.cached).toBeGreaterThan(0);
  });
});

describe('tenants through the kv-store', () => {
  const ids = [1, ...Array.from({ length: 99 }, (_, i) => 3 + ((4242 + i * 104729) % 31000))]; // 6 full blocks + 4
  const GREEDY = samplingToWire(samplingParams({ temperature: 0, maxTokens: 6, ignoreEos: true }));
  const req = (id: string, salt: string): GenerateRequestMsg => ({
    request_id: id,
    prompt_token_ids: ids,
    sampling: GREEDY,
    priority: 0,
    prefill: null,
    cache_salt: salt,
  });

  it('blocks offloaded under one salt are prefetched only under that salt', async () => {
    const c = worker(decode);
    const first = await tokensOf(c, req('store-a', 'tenant-a'));
    decode.engine.pool.evictFree(); // offloads A's blocks to the store
    await decode.server.kvStore!.flushed();
    await waitFor('the store holds the offloaded blocks', () => store.store.stats().memory.blocks >= 6, 5_000, 20);
    const s0 = decode.engine.stats();
    expect(await tokensOf(c, req('store-b', 'tenant-b'))).toEqual(first);
    const s1 = decode.engine.stats();
    expect(s1.prefetchedTokens - s0.prefetchedTokens).toBe(0); // nothing of A's came back for B
    decode.engine.pool.evictFree();
    await decode.server.kvStore!.flushed();
    expect(await tokensOf(c, req('store-a2', 'tenant-a'))).toEqual(first);
    expect(decode.engine.stats().prefetchedTokens - s1.prefetchedTokens).toBe(96); // A's own prefix did
  });
});

describe('crafted sampling values over gRPC', () => {
  const good = (): SamplingParamsMsg => samplingToWire(samplingParams({ temperature: 0, maxTokens: 4 }));
  const crafted: readonly [string, Partial<SamplingParamsMsg>][] = [
    ['temperature', { temperature: Number.NaN }],
    ['top_p', { top_p: 0 }],
    ['top_k', { top_k: -1000 }],
    ['repetition_penalty', { repetition_penalty: 0 }],
    ['presence_penalty', { presence_penalty: Infinity }],
    ['max_tokens', { max_tokens: 0 }],
    ['logprobs', { has_logprobs: true, logprobs: 4_000_000_000 }],
    ['seed', { has_seed: true, seed: 2 ** 62 }],
    ['stop_token_ids', { stop_token_ids: Array.from({ length: 10_000 }, (_, i) => i) }],
  ];

  it('Generate and Prefill refuse each with INVALID_ARGUMENT naming the field; no block is leaked and the worker serves on', async () => {
    const d = worker(decode);
    const p = worker(prefill);
    const ids = tokenizer.encode('A crafted request');
    for (const [field, patch] of crafted) {
      const sampling = { ...good(), ...patch };
      const gen = await tokensOf(d, { request_id: `bad-${field}`, prompt_token_ids: ids, sampling, priority: 0, prefill: null }).then(
        () => undefined,
        toCallError,
      );
      expect({ field, code: gen?.code, named: gen?.message.includes(`'${field}`) }).toEqual({
        field,
        code: 'INVALID_ARGUMENT',
        named: true,
      });
      const events = p.prefill({
        request_id: `bad-p-${field}`,
        prompt_token_ids: ids,
        sampling,
        from_block: 0,
        target: { grpc_address: decode.grpcAddress, transfer_id: `t-${field}`, transport: 'auto' },
      });
      const pre = await (async () => {
        for await (const _ of events) void _;
      })().then(() => undefined, toCallError);
      expect({ field, code: pre?.code }).toEqual({ field, code: 'INVALID_ARGUMENT' });
    }
    const missing = await tokensOf(d, {
      request_id: 'no-sampling',
      prompt_token_ids: ids,
      sampling: null,
      priority: 0,
      prefill: null,
    }).then(() => undefined, toCallError);
    expect(missing?.code).toBe('INVALID_ARGUMENT');
    await idle(decode);
    await idle(prefill);
    expect(await tokensOf(d, { request_id: 'good', prompt_token_ids: ids, sampling: good(), priority: 0, prefill: null })).toHaveLength(4);
  });
});
