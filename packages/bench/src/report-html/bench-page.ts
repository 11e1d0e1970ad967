// The bench report as tables and charts: one run, or several (`bench --compare`) overlaid.
import type { RequestRecord } from '../client';
import { describeRun } from '../format';
import type { BenchReport } from '../report';
import { PERCENTILE_GRID, alignRates, binWidth, cell, percentileCurve, rateOverTime, type ChartSpec, type ReportPage } from './spec';

export interface LabelledBenchReport {
  /** How the run is named on the page (e.g. its file name). */
  readonly label: string;
  readonly report: BenchReport;
}

export function benchReportPage(runs: readonly LabelledBenchReport[]): ReportPage {
  if (runs.length === 0) throw new RangeError('a report page needs at least one bench report');
  const ok = runs.map((r) => r.report.requests.filter((q) => q.success));
  const distribution = (title: string, note: string, of: (r: RequestRecord) => Iterable<number>): ChartSpec => ({
    title,
    note,
    kind: 'lines',
    x: { label: 'percentile', values: PERCENTILE_GRID },
    y: { label: 'ms (log scale)', log: true },
    series: runs.map((r, i) => ({ label: r.label, values: percentileCurve(ok[i]!.flatMap((q) => [...of(q)])) })),
  });
  const span = Math.max(...runs.map((r) => r.report.durationSec));
  const width = binWidth(span);
  // One bin width for all runs; each run's bins end with it (null after, not zero).
  const throughput = alignRates(ok.map((reqs, i) => rateOverTime(reqs.flatMap(outputTokenTimes), runs[i]!.report.durationSec, width)));
  return {
    title: runs.length === 1 ? `pdserve bench — ${runs[0]!.label}` : `pdserve bench — ${runs.map((r) => r.label).join(' vs ')}`,
    meta: runs.map(
      (r) =>
        `${r.label}: ${describeRun(r.report)}; started ${r.report.startedAt}, ${r.report.durationSec.toFixed(1)} s${r.report.aborted ? ' (aborted: partial)' : ''}`,
    ),
    tables: [
      {
        title: 'Summary',
        columns: [
          'run',
          'completed',
          'failed',
          'req/s',
          'output tok/s',
          'TTFT p50 ms',
          'p90',
          'p99',
          'ITL p50 ms',
          'p99',
          'TPOT p50 ms',
          'goodput req/s',
          'prefix hit rate',
        ],
        rows: runs.map(({ label, report: r }) => [
          label,
          String(r.counts.completed),
          String(r.counts.failed),
          cell(r.throughput.requestsPerSec, 2),
          cell(r.throughput.outputTokensPerSec, 1),
          cell(r.latencyMs.ttft.p50, 1),
          cell(r.latencyMs.ttft.p90, 1),
          cell(r.latencyMs.ttft.p99, 1),
          cell(r.latencyMs.itl.p50, 2),
          cell(r.latencyMs.itl.p99, 2),
          cell(r.latencyMs.tpot.p50, 2),
          cell(r.goodput?.requestsPerSec, 2),
          r.prefixCache.hitRate === null ? 'not reported' : cell(r.prefixCache.hitRate * 100, 1, '%'),
        ]),
      },
    ],
    charts: [
      distribution('TTFT distribution', 'Time to first token of each completed request, by percentile.', (q) =>
        q.ttftMs === null ? [] : [q.ttftMs],
      ),
      distribution(
        'ITL distribution',
        'Every gap between consecutive streamed chunks of completed requests, by percentile.',
        (q) => q.itlMs,
      ),
      {
        title: 'Output throughput over time',
        note: `Output tokens per second in ${width} s bins since the start of the run, counted at the moment each chunk arrived.`,
        kind: 'lines',
        x: { label: 'seconds since start', values: throughput.x },
        y: { label: 'tokens/s' },
        series: runs.map((r, i) => ({ label: r.label, values: throughput.series[i]! })),
      },
      {
        title: 'Prefix cache hit rate',
        note: 'Cached prompt tokens / prompt tokens, from usage.prompt_tokens_details.cached_tokens (empty when the server did not report it).',
        kind: 'bars',
        x: { label: 'run', values: runs.map((_, i) => i), categories: runs.map((r) => r.label) },
        y: { label: '%' },
        series: [
          {
            label: 'hit rate',
            values: runs.map((r) => (r.report.prefixCache.hitRate === null ? null : Math.round(r.report.prefixCache.hitRate * 1000) / 10)),
          },
        ],
      },
    ],
  };
}

/** When a request's output tokens arrived, in seconds since the run's start: the first chunk, then each gap. */
function outputTokenTimes(q: RequestRecord): { from: number; to: number; tokens: number }[] {
  if (q.ttftMs === null) return [];
  const chunks = q.itlMs.length + 1;
  const perChunk = q.outputTokens / chunks;
  let t = q.startMs + q.ttftMs;
  const out = [{ from: t / 1000, to: t / 1000, tokens: perChunk }];
  for (const gap of q.itlMs) {
    t += gap;
    out.push({ from: t / 1000, to: t / 1000, tokens: perChunk });
  }
  return out;
}
