import type { CapacityResult } from './capacity';
import type { SimReport } from './report';

const ms = (x: number | null): string => (x === null ? '—' : x.toFixed(1));
const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;

/** A few lines summarising one simulation. */
export function formatSimReport(r: SimReport): string {
  const c = r.config;
  const cluster = c.prefillWorkers > 0 ? `${c.prefillWorkers} prefill + ${c.decodeWorkers} decode` : `${c.decodeWorkers} mixed`;
  const store = c.globalPool ? "global pool of the workers' caches" : c.storeTokens === null ? 'no store' : `store ${c.storeTokens} tokens`;
  const { ttft, tbt, e2e } = r.latencyMs;
  const lines = [
    `cluster: ${cluster} workers, ${c.policy}, cache ${c.cacheTokens} tokens/worker, ${store}, block ${c.blockSize}, time ×${c.timeScale}` +
      (c.hostParallelism === null ? '' : `, one shared host running ${c.hostParallelism.toFixed(2)} steps at once`),
    `requests: ${r.completed}/${r.requests} completed, offered ${r.offeredRequestsPerSec.toFixed(2)} req/s, makespan ${r.makespanSec.toFixed(1)} s`,
    `prefix hit: ${pct(r.prefix.hitRate)} (local ${pct(r.prefix.localHitRate)}, fetched from ${c.globalPool ? 'other workers' : 'the store'} ${pct(r.prefix.storeHitRate)}); prefill computed ${r.prefix.prefillTokensComputed} of ${r.prefix.promptTokens} tokens`,
    `TTFT ms: p50 ${ms(ttft.p50)} p90 ${ms(ttft.p90)} p99 ${ms(ttft.p99)} | TBT ms: p50 ${ms(tbt.p50)} p90 ${ms(tbt.p90)} p99 ${ms(tbt.p99)} | E2E ms p90 ${ms(e2e.p90)}`,
    `routing: prefill remote ${r.routing.remotePrefill}, local ${r.routing.localPrefill}; per decode worker min ${r.routing.decodePerWorker.min} mean ${r.routing.decodePerWorker.mean.toFixed(1)} max ${r.routing.decodePerWorker.max}`,
  ];
  if (r.slo !== null) lines.push(`SLO TTFT ≤ ${r.slo.ttftMs} ms: ${pct(r.slo.attainment)} of requests`);
  return lines.join('\n');
}

export function formatCapacity(c: CapacityResult): string {
  const head =
    c.requestsPerSec === null
      ? `capacity: ${c.percentile} TTFT ≤ ${c.sloTtftMs} ms is not met even at the slowest probe`
      : `capacity: ${c.requestsPerSec.toFixed(2)} req/s keeps ${c.percentile} TTFT ≤ ${c.sloTtftMs} ms (time ×${c.timeScale!.toPrecision(3)}` +
        `${c.bound === 'meets-at-fastest' ? ', a lower bound: met at the fastest probe' : ''})`;
  const probes = c.probes.map(
    (p) =>
      `  time ×${p.timeScale.toPrecision(3)}: ${p.requestsPerSec.toFixed(2)} req/s, ${c.percentile} TTFT ${ms(p.ttftMs)} ms ${p.meets ? 'meets' : 'misses'}`,
  );
  return [head, ...probes].join('\n');
}
