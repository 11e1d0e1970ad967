// Routing on real workers (in one process, gRPC over loopback, embedded control plane): on 8 shared
// system prompts × many users over 2 decode workers whose caches each hold about half the prompts,
// kv-aware keeps each prompt on one worker. Hit rates come from the workers' own counters.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@pdserve/api';
import { connectControlPlane, InProcessHub, silentLogger as cpSilent, type ControlPlane } from '@pdserve/control-plane';
import { startGateway, type Gateway } from '@pdserve/gateway';
import { ensureTinyModel, loadModelSpec, ModelRunner, referenceGenerate, samplingParams } from '@pdserve/model';
import type { PolicyName } from '@pdserve/router';
import { completion, waitFor } from '@pdserve/testkit';
import { Tokenizer } from '@pdserve/tokenizer';
import { startWorkerService, type WorkerService } from '@pdserve/worker';

const PROMPTS = 8;
const USERS = 5;
const SYSTEM_TOKENS = 512;
const BLOCK_BYTES = 4 * 2 * 2 * 16 * 32 * 4;

let dir: string;

interface Cluster {
  cp: ControlPlane;
  workers: WorkerService[];
  gateways: Map<PolicyName, Gateway>;
}

async function startCluster(policies: PolicyName[], kvBlocks: number, prefill = 0): Promise<Cluster> {
  const cp = await connectControlPlane({ cluster: 'routing', hub: new InProcessHub(), logger: cpSilent });
  const engine = { modelDir: dir, modelId: 'tiny', kvCacheBytes: kvBlocks * BLOCK_BYTES, maxNumSeqs: 16 };
  const workers: WorkerService[] = [];
  for (let i = 0; i < prefill; i++) workers.push(await startWorkerService({ role: 'prefill', instanceId: `p${i}`, engine, controlPlane: cp, logger: cpSilent }));
  for (let i = 0; i < 2; i++) workers.push(await startWorkerService({ role: 'decode', instanceId: `d${i}`, engine, controlPlane: cp, logger: cpSilent }));
  const gateways = new Map<PolicyName, Gateway>();
  for (const policy of policies) {
    const gw = await startGateway({ modelDir: dir, modelId: 'tiny', controlPlane: cp, logger: silentLogger, port: 0, policy, disagg: { remotePrefillMinTokens: 64 } });
    await waitFor('gateway sees the workers', () => gw.view.workers().length === workers.length, 10_000);
    gateways.set(policy, gw);
  }
  return { cp, workers, gateways };
}

async function stopCluster(c: Cluster): Promise<void> {
  for (const g of c.gateways.values()) await g.close();
  await Promise.all(c.workers.map((w) => w.close()));
  await c.cp.close();
}

function systemPrompt(i: number): number[] {
  return [1, ...Array.from({ length: SYSTEM_TOKENS - 1 }, (_, j) => 100 + ((i * 7919 + j * 31) % 29000))];
}

interface Target {
  readonly client: OpenAI;
  readonly workers: WorkerService[];
  readonly ttfts: number[];
}

/**
 * Runs the same workload through several clusters, alternating half-waves between them so that the
 * shared machine's noise falls on all alike. Returns each cluster's decode-worker prefix hit rate
 * (from the workers' own counters) and mean TTFT.
 */
async function runWorkloads(targets: Target[]): Promise<{ hitRate: number; meanTtftMs: number }[]> {
  for (const t of targets) {
    // Warm-up (JIT, model threads) on one-block prompts that later traffic never shares.
    await Promise.all(Array.from({ length: 4 }, (_, i) => t.client.completions.create({ model: 'tiny', prompt: [1, 9000 + i, 9001, 9002], max_tokens: 2, temperature: 0 })));
  }
  const before = targets.map((t) => t.workers.map((w) => w.engine.stats()));
  let seed = 12345;
  const rand = (n: number): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0), seed % n);
  // Users arrive in waves of the 8 prompts in a shuffled order (a fixed order would let round-robin
  // pin each prompt to one worker by accident), half a wave (4 requests) in flight at a time.
  for (let u = 0; u < USERS; u++) {
    const order = Array.from({ length: PROMPTS }, (_, p) => p);
    for (let i = order.length - 1; i > 0; i--) {
      const j = rand(i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    for (const half of [order.slice(0, 4), order.slice(4)]) {
      for (const t of targets) {
        await Promise.all(
          half.map(async (p) => {
            const prompt = [...systemPrompt(p), ...Array.from({ length: 12 }, (_, j) => 200 + u * 50 + j)];
            const t0 = performance.now();
            const stream = await t.client.completions.create({ model: 'tiny', prompt, max_tokens: 4, temperature: 0, stream: true });
            let first = true;
            for await (const _ of stream) {
              if (first) t.ttfts.push(performance.now() - t0);
              first = false;
            }
          }),
        );
      }
    }
  }
  return targets.map((t, k) => {
    const after = t.workers.map((w) => w.engine.stats());
    const hit = after.reduce((a, s, i) => a + s.prefixCacheHitTokens - before[k]![i]!.prefixCacheHitTokens, 0);
    const query = after.reduce((a, s, i) => a + s.prefixCacheQueryTokens - before[k]![i]!.prefixCacheQueryTokens, 0);
    return { hitRate: hit / query, meanTtftMs: t.ttfts.reduce((a, b) => a + b, 0) / t.ttfts.length };
  });
}

beforeAll(async () => {
  dir = await ensureTinyModel();
});

describe('routing on real workers', () => {
  it('kv-aware reaches near the best possible prefix hit rate and ≥ 1.5× round-robin, with lower mean TTFT', async () => {
    // Each worker's pool (140 blocks) holds 4 system prompts (32 blocks each) plus the running sequences,
    // but not all 8: a policy that spreads a prompt over both workers thrashes.
    const clusters = [await startCluster(['kv-aware'], 140), await startCluster(['round-robin'], 140)];
    let kv;
    let rr;
    try {
      [kv, rr] = await runWorkloads(
        clusters.map((c) => ({ client: new OpenAI({ baseURL: `${[...c.gateways.values()][0]!.url}/v1`, apiKey: 'x', maxRetries: 0 }), workers: c.workers, ttfts: [] })),
      );
    } finally {
      for (const c of clusters) await stopCluster(c);
    }
    // Best possible: every request after a prompt's first hits all its full system blocks.
    const promptLen = SYSTEM_TOKENS + 12;
    const best = ((USERS - 1) * PROMPTS * SYSTEM_TOKENS) / (USERS * PROMPTS * promptLen);
    console.log(`prefix hit rate: kv-aware ${kv.hitRate.toFixed(3)}, round-robin ${rr.hitRate.toFixed(3)}, best ${best.toFixed(3)}; mean TTFT ${kv.meanTtftMs.toFixed(1)} vs ${rr.meanTtftMs.toFixed(1)} ms`);
    expect(kv.hitRate).toBeGreaterThanOrEqual(best * 0.9);
    expect(kv.hitRate).toBeGreaterThanOrEqual(rr.hitRate * 1.5);
    expect(kv.meanTtftMs).toBeLessThan(rr.meanTtftMs);
  });

  it('tokens stay the reference’s with the prefix cached on the decode worker and on a different worker', async () => {
    const c = await startCluster(['kv-aware', 'round-robin'], 512, 1);
    const runner = await ModelRunner.create(loadModelSpec(dir));
    const tokenizer = await Tokenizer.fromDir(dir);
    try {
      const kv = new OpenAI({ baseURL: `${c.gateways.get('kv-aware')!.url}/v1`, apiKey: 'x', maxRetries: 0 });
      const rr = new OpenAI({ baseURL: `${c.gateways.get('round-robin')!.url}/v1`, apiKey: 'x', maxRetries: 0 });
      const shared = systemPrompt(42);
      const ask = async (client: OpenAI, suffix: number[]) => {
        const prompt = [...shared, ...suffix];
        const ref = await referenceGenerate(runner, prompt, samplingParams({ temperature: 0, maxTokens: 8, stopTokenIds: tokenizer.eosTokenIds }));
        const res = await client.completions.create({ model: 'tiny', prompt, max_tokens: 8, temperature: 0 });
        expect(res.choices[0]!.text).toBe(completion(tokenizer, prompt, ref.tokenIds));
        return res.usage!.prompt_tokens_details!.cached_tokens ?? 0;
      };
      expect(await ask(kv, [5, 6, 7])).toBe(0); // cold: computed (remotely) and now cached on one decode worker
      await new Promise((r) => setTimeout(r, 300)); // let the KV events reach the gateway's index
      expect(await ask(kv, [8, 9])).toBeGreaterThanOrEqual(SYSTEM_TOKENS - 16); // kv-aware finds the decode worker holding it
      // Round-robin alternates decode workers, so one of these lands on the decode worker without the
      // prefix: the prefill worker, which holds it from the first request, serves it from its cache.
      await ask(rr, [10, 11]);
      await ask(rr, [12, 13]);
      const decodes = c.workers.filter((w) => w.instanceId.startsWith('d'));
      expect(decodes.map((d) => d.engine.cachedPrefixBlocks(shared) >= SYSTEM_TOKENS / 16 - 1)).toEqual([true, true]);
      expect(c.workers.find((w) => w.instanceId === 'p0')!.engine.stats().prefixCacheHitTokens).toBeGreaterThanOrEqual(SYSTEM_TOKENS - 16);
    } finally {
      await runner.release();
      await stopCluster(c);
    }
  });
});
