// The simulate report as tables and charts: every simulated configuration (policy, cache layout) overlaid.
import type { SimReport, SimRequestRecord } from '../sim/report';
import { PERCENTILE_GRID, alignRates, binWidth, cell, percentileCurve, rateOverTime, round, type ChartSpec, type ReportPage } from './spec';

export interface NamedSimRun {
  /** e.g. "kv-aware, local caches". */
  readonly name: string;
  /** Simulated with `recordRequests` (the distributions need every request). */
  readonly report: SimReport;
}

export function simReportPage(trace: string, runs: readonly NamedSimRun[]): ReportPage {
  if (runs.length === 0) throw new RangeError('a report page needs at least one simulation');
  const reqs = runs.map(({ name, report }) => {
    if (report.perRequest === undefined)
      throw new RangeError(`simulation "${name}" has no per-request records (simulate with recordRequests)`);
    return report.perRequest;
  });
  const c = runs[0]!.report.config;
  const cluster = c.prefillWorkers > 0 ? `${c.prefillWorkers} prefill + ${c.decodeWorkers} decode` : `${c.decodeWorkers} mixed`;
  const distribution = (title: string, note: string, of: (r: SimRequestRecord) => number | null): ChartSpec => ({
    title,
    note,
    kind: 'lines',
    x: { label: 'percentile', values: PERCENTILE_GRID },
    y: { label: 'ms (log scale)', log: true },
    series: runs.map((r, i) => ({ label: r.name, values: percentileCurve(reqs[i]!.map(of).filter((x): x is number => x !== null)) })),
  });
  const spans = reqs.map((rs) => rs.reduce((m, r) => Math.max(m, (r.arrivalMs + r.e2eMs) / 1000), 0));
  const width = binWidth(Math.max(...spans));
  // One bin width for all runs; each run's bins end with it (null after, not zero).
  const throughput = alignRates(reqs.map((rs, i) => rateOverTime(rs.map(outputSpan), spans[i]!, width)));
  return {
    title: `pdserve simulate — ${trace}`,
    meta: [
      `${cluster} workers, cache ${c.cacheTokens.toLocaleString('en-US')} tokens/worker, block ${c.blockSize} tokens, time ×${c.timeScale}, ${runs[0]!.report.requests} requests`,
      `Simulated time from the cost model: prefill ${ms(c.cost.prefillSecondsPerToken)} ms/token, decode step ${ms(c.cost.decodeStep.baseSeconds)} ms + ${ms(c.cost.decodeStep.perSequenceSeconds)} ms/sequence.`,
    ],
    tables: [
      {
        title: 'Summary',
        columns: [
          'run',
          'hit rate',
          'own cache',
          'fetched',
          'prefill tokens computed',
          'TTFT p50 ms',
          'p90',
          'p99',
          'TBT p50 ms',
          'p99',
          'output tok/s',
          'SLO met',
        ],
        rows: runs.map(({ name, report: r }) => [
          name,
          cell(r.prefix.hitRate * 100, 1, '%'),
          cell(r.prefix.localHitRate * 100, 1, '%'),
          cell(r.prefix.storeHitRate * 100, 1, '%'),
          r.prefix.prefillTokensComputed.toLocaleString('en-US'),
          cell(r.latencyMs.ttft.p50, 1),
          cell(r.latencyMs.ttft.p90, 1),
          cell(r.latencyMs.ttft.p99, 1),
          cell(r.latencyMs.tbt.p50, 2),
          cell(r.latencyMs.tbt.p99, 2),
          cell(r.throughput.outputTokensPerSec, 1),
          r.slo === null ? '—' : cell(r.slo.attainment * 100, 1, '%'),
        ]),
      },
    ],
    charts: [
      distribution('TTFT distribution', 'Simulated time to first token of each request, by percentile.', (r) => r.ttftMs),
      distribution(
        'Inter-token latency distribution (per request)',
        "Each request's mean time between output tokens ((e2e − TTFT) / (output tokens − 1)), by percentile; requests with one output token have none.",
        (r) => (r.outputTokens > 1 ? (r.e2eMs - r.ttftMs) / (r.outputTokens - 1) : null),
      ),
      {
        title: 'Output throughput over time',
        note: `Output tokens per second in ${width} s bins of simulated time; each request's tokens are spread evenly from its first token to its last.`,
        kind: 'lines',
        x: { label: 'simulated seconds', values: throughput.x },
        y: { label: 'tokens/s' },
        series: runs.map((r, i) => ({ label: r.name, values: throughput.series[i]! })),
      },
      {
        title: 'Prefix hit rate per policy',
        note: "Share of prompt tokens not computed: reused from the prefilling worker's own cache, or fetched (from the kv-store, or another worker with a global pool).",
        kind: 'bars',
        x: { label: 'run', values: runs.map((_, i) => i), categories: runs.map((r) => r.name) },
        y: { label: '%' },
        series: [
          { label: 'own cache', values: runs.map((r) => round(r.report.prefix.localHitRate * 100, 2)) },
          { label: 'fetched', values: runs.map((r) => round(r.report.prefix.storeHitRate * 100, 2)) },
        ],
      },
    ],
  };
}

/** A request's output tokens, spread from its first token to its end (seconds of simulated time). */
function outputSpan(r: SimRequestRecord): { from: number; to: number; tokens: number } {
  return { from: (r.arrivalMs + r.ttftMs) / 1000, to: (r.arrivalMs + r.e2eMs) / 1000, tokens: r.outputTokens };
}

const ms = (sec: number): string => String(round(sec * 1e3, 4));
