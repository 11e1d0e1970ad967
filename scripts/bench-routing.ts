// kv-aware vs round-robin on the routing workload of test/routing.test.ts (8 shared system prompts × 5
// users, 2 decode workers that each cache about half the prompts): prefix hit rate and mean TTFT, the
// clusters side by side, half a wave each in turn. The test checks the hit rates; the TTFT comparison is
// a measurement, here, on an idle machine:
//
//   node --import tsx scripts/bench-routing.ts
import OpenAI from 'openai';
import { ensureTinyModel } from '@pdserve/model';
import { bestHitRate, runWorkloads, startCluster, stopCluster } from '../test/lib/routing-workload';
import { machine } from './lib/stats';

const dir = await ensureTinyModel();
const clusters = [await startCluster(dir, ['kv-aware'], 140), await startCluster(dir, ['round-robin'], 140)];
let results;
try {
  results = await runWorkloads(
    clusters.map((c) => ({
      client: new OpenAI({ baseURL: `${[...c.gateways.values()][0]!.url}/v1`, apiKey: 'x', maxRetries: 0 }),
      workers: c.workers,
      ttfts: [],
    })),
  );
} finally {
  for (const c of clusters) await stopCluster(c);
}
const [kv, rr] = results as [{ hitRate: number; meanTtftMs: number }, { hitRate: number; meanTtftMs: number }];
process.stdout.write(
  [
    `Routing workload (tiny model, 2 decode workers); ${machine()}.`,
    '',
    '| policy | prefix hit rate | mean TTFT (ms) |',
    '| --- | ---: | ---: |',
    `| kv-aware | ${kv.hitRate.toFixed(3)} | ${kv.meanTtftMs.toFixed(1)} |`,
    `| round-robin | ${rr.hitRate.toFixed(3)} | ${rr.meanTtftMs.toFixed(1)} |`,
    `| best possible | ${bestHitRate().toFixed(3)} | |`,
    '',
    `kv-aware mean TTFT ${kv.meanTtftMs < rr.meanTtftMs ? 'below' : 'NOT below'} round-robin's.`,
    '',
  ].join('\n'),
);
