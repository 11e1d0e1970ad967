// Simulator timing: replays the whole Mooncake trace on clusters of 16, 128 and 1,024 workers per layout
// (default cost model, 131,072-token caches per worker, 512-token blocks).
// Run: node --import tsx packages/bench/src/sim/timing.ts [trace.jsonl]
import { performance } from 'node:perf_hooks';
import { MOONCAKE_TRACE, readTrace } from '../trace';
import type { SimOptions } from './options';
import { simulate } from './simulate';

const path = process.argv[2] ?? MOONCAKE_TRACE;
const trace = await readTrace(path);
const fmt = (x: number | null, d = 0): string => (x === null ? '—' : x.toFixed(d));

for (const workers of [16, 128, 1024]) {
  const decode = Math.round(workers * 0.75);
  const layouts: [string, Partial<SimOptions>][] = [
    ['mixed round-robin', { decodeWorkers: workers, policy: 'round-robin' }],
    ['mixed kv-aware', { decodeWorkers: workers, policy: 'kv-aware' }],
    ['mixed kv-aware+pool', { decodeWorkers: workers, policy: 'kv-aware', globalPool: true }],
    ['mixed kv-aware+store', { decodeWorkers: workers, policy: 'kv-aware', store: { capacityTokens: 64 * 131_072 } }],
    [
      `${workers - decode}P/${decode}D kv-aware+store`,
      { decodeWorkers: decode, prefillWorkers: workers - decode, store: { capacityTokens: 64 * 131_072 } },
    ],
  ];
  for (const [name, o] of layouts) {
    const t0 = performance.now();
    const r = simulate({ trace, decodeWorkers: workers, ...o });
    const s = (performance.now() - t0) / 1000;
    process.stdout.write(
      `${String(workers).padStart(5)} workers ${name.padEnd(26)} ${s.toFixed(2).padStart(6)} s wall | ` +
        `hit ${(r.prefix.hitRate * 100).toFixed(1)}% (store ${(r.prefix.storeHitRate * 100).toFixed(1)}%) ` +
        `TTFT p50/p90 ${fmt(r.latencyMs.ttft.p50)}/${fmt(r.latencyMs.ttft.p90)} ms TBT p90 ${fmt(r.latencyMs.tbt.p90, 1)} ms ` +
        `| ${r.events} events ${r.steps} steps\n`,
    );
  }
}
