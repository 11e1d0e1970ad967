// The simulator replays the whole shared trace (3,993 requests, 1,022 s of arrivals) on clusters of 16,
// 128 and 1,024 workers, each in well under a minute on two shared cores, routing with the real router.
import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { MOONCAKE_TRACE, readTrace, type Trace } from '../trace';
import { simulate } from './simulate';

const LIMIT_SECONDS = 60;

describe('simulator at scale on the full shared trace', () => {
  let trace: Trace;

  for (const workers of [16, 128, 1024]) {
    it(
      `${workers} workers: disaggregated kv-aware with a kv-store tier, and mixed with a global pool, each < ${LIMIT_SECONDS} s`,
      async () => {
        trace ??= await readTrace(MOONCAKE_TRACE);
        const prefill = workers / 4;
        const runs = [
          { decodeWorkers: workers - prefill, prefillWorkers: prefill, store: { capacityTokens: workers * 1_000_000 } },
          { decodeWorkers: workers, globalPool: true },
        ];
        for (const layout of runs) {
          const t0 = performance.now();
          const r = simulate({ trace, policy: 'kv-aware', cacheTokens: 1_000_000, ...layout });
          const seconds = (performance.now() - t0) / 1000;
          expect(seconds).toBeLessThan(LIMIT_SECONDS);
          expect(r.completed).toBe(3993);
          expect(r.latencyMs.ttft.count).toBe(3993);
          expect(r.prefix.hitRate).toBeGreaterThan(0.4);
          expect(r.prefix.localHitTokens + r.prefix.storeHitTokens + r.prefix.prefillTokensComputed).toBe(r.prefix.promptTokens);
          // Every decode worker exists in the router and the work spreads: at 1,024 workers some stay idle.
          expect(r.routing.decodePerWorker.max).toBeGreaterThan(0);
          process.stderr.write(
            `  ${workers} workers ${'prefillWorkers' in layout ? `${prefill}P/${workers - prefill}D + kv-store` : 'mixed + global pool'}: ${seconds.toFixed(2)} s, hit ${(r.prefix.hitRate * 100).toFixed(1)}%\n`,
          );
        }
      },
      2 * LIMIT_SECONDS * 1000,
    );
  }
});
