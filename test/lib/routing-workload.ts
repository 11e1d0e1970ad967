// The routing workload on real workers (in one process, gRPC over loopback, embedded control plane): 8
// shared system prompts × many users over 2 decode workers whose caches each hold about half the prompts.
// test/routing.test.ts checks the prefix hit rates it yields; scripts/bench-routing.ts also compares TTFT.
import type OpenAI from 'openai';
import { silentLogger } from '@pdserve/api';
import { connectControlPlane, InProcessHub, silentLogger as cpSilent, type ControlPlane } from '@pdserve/control-plane';
import { startGateway, type Gateway } from '@pdserve/gateway';
import type { PolicyName } from '@pdserve/router';
import { waitFor } from '@pdserve/testkit';
import { startWorkerService, type WorkerService } from '@pdserve/worker';

export const PROMPTS = 8;
export const USERS = 5;
export const SYSTEM_TOKENS = 512;
const BLOCK_BYTES = 4 * 2 * 2 * 16 * 32 * 4;

export interface Cluster {
  cp: ControlPlane;
  workers: WorkerService[];
  gateways: Map<PolicyName, Gateway>;
}

export async function startCluster(dir: string, policies: PolicyName[], kvBlocks: number, prefill = 0): Promise<Cluster> {
  const cp = await connectControlPlane({ cluster: 'routing', hub: new InProcessHub(), logger: cpSilent });
  const engine = { modelDir: dir, modelId: 'tiny', kvCacheBytes: kvBlocks * BLOCK_BYTES, maxNumSeqs: 16 };
  const workers: WorkerService[] = [];
  for (let i = 0; i < prefill; i++)
    workers.push(await startWorkerService({ role: 'prefill', instanceId: `p${i}`, engine, controlPlane: cp, logger: cpSilent }));
  for (let i = 0; i < 2; i++)
    workers.push(await startWorkerService({ role: 'decode', instanceId: `d${i}`, engine, controlPlane: cp, logger: cpSilent }));
  const gateways = new Map<PolicyName, Gateway>();
  for (const policy of policies) {
    const gw = await startGateway({
      modelDir: dir,
      modelId: 'tiny',
      controlPlane: cp,
      logger: silentLogger,
      port: 0,
      policy,
      disagg: { remotePrefillMinTokens: 64 },
    });
    await waitFor('gateway sees the workers', () => gw.view.workers().length === workers.length, 10_000);
    gateways.set(policy, gw);
  }
  return { cp, workers, gateways };
}

export async function stopCluster(c: Cluster): Promise<void> {
  for (const g of c.gateways.values()) await g.close();
  await Promise.all(c.workers.map((w) => w.close()));
  await c.cp.close();
}

export function systemPrompt(i: number): number[] {
  return [1, ...Array.from({ length: SYSTEM_TOKENS - 1 }, (_, j) => 100 + ((i * 7919 + j * 31) % 29000))];
}

export interface Target {
  readonly client: OpenAI;
  readonly workers: WorkerService[];
  readonly ttfts: number[];
}

/**
 * Runs the same workload through several clusters, alternating half-waves between them so that the
 * shared machine's noise falls on all alike. Returns each cluster's decode-worker prefix hit rate
 * (from the workers' own counters) and mean TTFT.
 */
export async function runWorkloads(targets: Target[]): Promise<{ hitRate: number; meanTtftMs: number }[]> {
  for (const t of targets) {
    // Warm-up (JIT, model threads) on one-block prompts that later traffic never shares.
    await Promise.all(
      Array.from({ length: 4 }, (_, i) =>
        t.client.completions.create({ model: 'tiny', prompt: [1, 9000 + i, 9001, 9002], max_tokens: 2, temperature: 0 }),
      ),
    );
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

/** Every request after a prompt's first hits all its full system blocks: the best possible prefix hit rate. */
export function bestHitRate(): number {
  return ((USERS - 1) * PROMPTS * SYSTEM_TOKENS) / (USERS * PROMPTS * (SYSTEM_TOKENS + 12));
}
