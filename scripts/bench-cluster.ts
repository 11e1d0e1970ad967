// Cluster benchmarks (the disaggregated cluster issue), each a ratio inside one run:
//   routing       TTFT p50/p99 and output tokens/s, kv-aware vs round-robin, 8 shared system prompts ×
//                 many users over 2 decode workers (the bench load generator against each gateway)
//   disagg cost   TTFT of a cold 512-token prompt prefilled on a prefill worker and handed over ÷ the
//                 same on one mixed worker
// KV handoff bytes/s per transport is scripts/bench-transfer.ts.
// Run: node --import tsx scripts/bench-cluster.ts [--requests 64]
import { parseArgs } from 'node:util';
import { silentLogger } from '@pdserve/api';
import { runBench, type BenchReport } from '@pdserve/bench';
import { connectControlPlane, InProcessHub, silentLogger as cpSilent } from '@pdserve/control-plane';
import { startGateway, type Gateway } from '@pdserve/gateway';
import { ensureTinyModel } from '@pdserve/model';
import type { PolicyName } from '@pdserve/router';
import type { WorkerRole } from '@pdserve/contracts';
import { startWorkerService, type WorkerService } from '@pdserve/worker';
import { machine, median, sideBySide } from './lib/stats';

const { values: args } = parseArgs({ options: { requests: { type: 'string', default: '64' } } });
const dir = await ensureTinyModel();
const BLOCK_BYTES = 4 * 2 * 2 * 16 * 32 * 4;
const log = (s: string): void => void process.stderr.write(s + '\n');

async function cluster(roles: WorkerRole[], policy: PolicyName, kvBlocks: number, remotePrefillMinTokens: number) {
  const cp = await connectControlPlane({ cluster: 'bench', hub: new InProcessHub(), logger: cpSilent });
  // Every engine shares this process's two cores, as under `start`: none spin-waits.
  const engine = { modelDir: dir, modelId: 'tiny', kvCacheBytes: kvBlocks * BLOCK_BYTES, runner: { allowSpinning: false } };
  const workers: WorkerService[] = [];
  for (const [i, role] of roles.entries())
    workers.push(await startWorkerService({ role, instanceId: `${role}-${i}`, engine, controlPlane: cp, logger: cpSilent }));
  const gw: Gateway = await startGateway({
    modelDir: dir,
    modelId: 'tiny',
    controlPlane: cp,
    logger: silentLogger,
    port: 0,
    policy,
    disagg: { remotePrefillMinTokens },
  });
  while (gw.view.workers().length < roles.length) await new Promise((r) => setTimeout(r, 20));
  return {
    gw,
    workers,
    async close() {
      await gw.close();
      await Promise.all(workers.map((w) => w.close()));
      await cp.close();
    },
  };
}

async function routing(policy: PolicyName): Promise<BenchReport> {
  // Pools of 140 blocks hold ~4 of the 8 prompts (32 blocks each): spreading a prompt thrashes.
  const c = await cluster(['decode', 'decode'], policy, 140, 1 << 30);
  try {
    return await runBench({
      url: c.gw.url,
      model: 'tiny',
      workload: 'shared-prefix',
      numPrefixes: 8,
      prefixLen: 512,
      inputLen: 16,
      maxTokens: 16,
      requests: Number(args.requests),
      concurrency: 4,
      seed: 7,
      ignoreEos: true,
    });
  } finally {
    await c.close();
  }
}

/**
 * Median time to the first streamed token of cold 512-token prompts (8 tokens generated), for each
 * topology. The clusters run side by side and take the same prompts in alternation, so that the
 * machine's drift over the run hits both alike.
 */
async function ttft512(topologies: readonly { roles: WorkerRole[]; remotePrefillMinTokens: number }[]): Promise<number[]> {
  const clusters = [];
  for (const t of topologies) clusters.push(await cluster(t.roles, 'kv-aware', 4096, t.remotePrefillMinTokens));
  try {
    // Ten warm-up prompts to each (a server runs warm; the JIT takes a few requests to settle on each path), then ten timed.
    const times = await sideBySide(
      clusters.map((c) => c.gw.url),
      { prompts: 10, warmup: 10, seed: 500, maxTokens: 8 },
    );
    return times.map((ts) => median(ts.map((t) => t.first)));
  } finally {
    for (const c of clusters) await c.close();
  }
}

log('routing: kv-aware...');
const kv = await routing('kv-aware');
log('routing: round-robin...');
const rr = await routing('round-robin');
log('disaggregation: mixed and prefill → decode, side by side...');
const [mixed, disagg] = (await ttft512([
  { roles: ['mixed'], remotePrefillMinTokens: 1 << 30 },
  { roles: ['prefill', 'decode'], remotePrefillMinTokens: 1 },
])) as [number, number];

const ms = (x: number | null): string => (x === null ? 'n/a' : x.toFixed(1));
const lines = [
  `Tiny model, in-process cluster (gRPC over loopback, embedded control plane); ${machine()}.`,
  '',
  `Routing: shared-prefix workload, 8 system prompts of 512 tokens + 16 unique, 16 output tokens, ${args.requests} requests, concurrency 4, 2 decode workers with 140-block (2240-token) KV pools.`,
  '',
  '| policy | prefix hit rate (cached_tokens) | TTFT p50 (ms) | TTFT p99 (ms) | output tokens/s |',
  '| --- | ---: | ---: | ---: | ---: |',
  ...[['kv-aware', kv] as const, ['round-robin', rr] as const].map(
    ([name, r]) =>
      `| ${name} | ${(r.prefixCache.hitRate ?? NaN).toFixed(3)} | ${ms(r.latencyMs.ttft.p50)} | ${ms(r.latencyMs.ttft.p99)} | ${r.throughput.outputTokensPerSec.toFixed(1)} |`,
  ),
  '',
  `| disaggregation cost | value | target |`,
  '| --- | ---: | ---: |',
  `| TTFT, 512-token cold prompt, streamed, 1 mixed worker (median of 10, ms) | ${ms(mixed * 1000)} | |`,
  `| TTFT, same, prefill worker → decode worker over the transfer engine (ms) | ${ms(disagg * 1000)} | |`,
  `| **disaggregated ÷ mixed** | **${(disagg / mixed).toFixed(2)}** | ≤ 1.15 |`,
];
process.stdout.write(lines.join('\n') + '\n');
process.exit(0);
