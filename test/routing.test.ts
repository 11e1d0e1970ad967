// Routing on real workers (in one process, gRPC over loopback, embedded control plane): on 8 shared
// system prompts × many users over 2 decode workers whose caches each hold about half the prompts,
// kv-aware keeps each prompt on one worker. Hit rates come from the workers' own counters.
import OpenAI from 'openai';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureTinyModel, loadModelSpec, ModelRunner, referenceGenerate, samplingParams } from '@pdserve/model';
import { completion } from '@pdserve/testkit';
import { Tokenizer } from '@pdserve/tokenizer';
import { bestHitRate, runWorkloads, startCluster, stopCluster, systemPrompt, SYSTEM_TOKENS } from './lib/routing-workload';

let dir: string;

beforeAll(async () => {
  dir = await ensureTinyModel();
});

describe('routing on real workers', () => {
  it('kv-aware reaches near the best possible prefix hit rate and ≥ 1.5× round-robin', async () => {
    // Each worker's pool (140 blocks) holds 4 system prompts (32 blocks each) plus the running sequences,
    // but not all 8: a policy that spreads a prompt over both workers thrashes.
    const clusters = [await startCluster(dir, ['kv-aware'], 140), await startCluster(dir, ['round-robin'], 140)];
    let kv;
    let rr;
    try {
      [kv, rr] = await runWorkloads(
        clusters.map((c) => ({
          client: new OpenAI({ baseURL: `${[...c.gateways.values()][0]!.url}/v1`, apiKey: 'x', maxRetries: 0 }),
          workers: c.workers,
          ttfts: [],
        })),
      );
    } finally {
      for (const c of clusters) await stopCluster(c);
    }
    const best = bestHitRate();
    expect(kv.hitRate).toBeGreaterThanOrEqual(best * 0.9);
    expect(kv.hitRate).toBeGreaterThanOrEqual(rr.hitRate * 1.5);
    // Mean TTFT is compared in scripts/bench-routing.ts: a timing on shared cores is no test assertion.
  });

  it('tokens stay the reference’s with the prefix cached on the decode worker and on a different worker', async () => {
    const c = await startCluster(dir, ['kv-aware', 'round-robin'], 512, 1);
    const runner = await ModelRunner.create(loadModelSpec(dir));
    const tokenizer = await Tokenizer.fromDir(dir);
    try {
      const kv = new OpenAI({ baseURL: `${c.gateways.get('kv-aware')!.url}/v1`, apiKey: 'x', maxRetries: 0 });
      const rr = new OpenAI({ baseURL: `${c.gateways.get('round-robin')!.url}/v1`, apiKey: 'x', maxRetries: 0 });
      const shared = systemPrompt(42);
      const ask = async (client: OpenAI, suffix: number[]) => {
        const prompt = [...shared, ...suffix];
        const ref = await referenceGenerate(
          runner,
          prompt,
          samplingParams({ temperature: 0, maxTokens: 8, stopTokenIds: tokenizer.eosTokenIds }),
        );
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
