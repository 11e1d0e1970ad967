// The HTML reports' numbers, built from hand-made runs: what each chart plots is checked here; that the
// page draws them in a browser is test/report-pages.test.ts's job.
import { describe, expect, it } from 'vitest';
import type { RequestRecord } from '../client';
import { buildReport, type BenchReport } from '../report';
import { resolveOptions } from '../options';
import { parseTrace } from '../trace';
import { simulate } from '../sim/simulate';
import { benchReportPage } from './bench-page';
import { jsonForScript, renderReportPage } from './page';
import { simReportPage } from './sim-page';
import { PERCENTILE_GRID, alignRates, binWidth, percentileCurve, rateOverTime } from './spec';

function request(index: number, over: Partial<RequestRecord>): RequestRecord {
  return {
    index,
    session: null,
    scheduledMs: 0,
    startMs: 0,
    success: true,
    status: 200,
    error: null,
    promptTokens: 10,
    expectedPromptTokens: 10,
    outputTokens: 3,
    maxTokens: 3,
    cachedTokens: null,
    ttftMs: 100,
    tpotMs: 10,
    e2eMs: 120,
    itlMs: [10, 10],
    ...over,
  };
}

function benchReport(records: RequestRecord[], durationSec: number): BenchReport {
  const options = resolveOptions({ url: 'http://127.0.0.1:1', model: 'tiny', workload: 'random', requests: records.length });
  return buildReport(options, records, '2026-01-01T00:00:00.000Z', durationSec, false);
}

describe('chart data', () => {
  it('a percentile curve interpolates between ranks on the 0–100 grid, null without samples', () => {
    const curve = percentileCurve([40, 10, 30, 20]);
    expect(curve.length).toBe(PERCENTILE_GRID.length);
    expect(curve[0]).toBe(10);
    expect(curve[100]).toBe(25); // p50 of 10, 20, 30, 40
    expect(curve[200]).toBe(40);
    expect(percentileCurve([]).every((v) => v === null)).toBe(true);
  });

  it('bin widths are 1, 2 or 5 × a power of ten near span / 60', () => {
    expect(binWidth(60)).toBe(1);
    expect(binWidth(18)).toBe(0.5);
    expect(binWidth(100)).toBe(2);
    expect(binWidth(250)).toBe(5);
    expect(binWidth(0)).toBe(1);
  });

  it('rates spread an interval over the bins it overlaps and keep points in their bin', () => {
    const { starts, rates } = rateOverTime(
      [
        { from: 0.5, to: 2.5, tokens: 20 }, // 10 tok/s over [0.5, 2.5]
        { from: 3.2, to: 3.2, tokens: 4 },
      ],
      4,
      1,
    );
    expect(starts).toEqual([0, 1, 2, 3]);
    expect(rates).toEqual([5, 10, 5, 4]);
  });

  it('runs of different lengths share the longest x axis, null past their end', () => {
    const a = { starts: [0, 1], rates: [1, 2] };
    const b = { starts: [0, 1, 2], rates: [3, 4, 5] };
    expect(alignRates([a, b])).toEqual({
      x: [0, 1, 2],
      series: [
        [1, 2, null],
        [3, 4, 5],
      ],
    });
  });
});

describe('bench report page', () => {
  const a = benchReport(
    [
      request(0, { startMs: 0, ttftMs: 100, itlMs: [10, 20], cachedTokens: 5 }),
      request(1, { startMs: 500, ttftMs: 300, itlMs: [30, 40], cachedTokens: 0 }),
      request(2, { success: false, status: 503, error: 'HTTP 503', ttftMs: null, tpotMs: null, e2eMs: null, itlMs: [] }),
    ],
    1,
  );
  const b = benchReport([request(0, { ttftMs: 50, itlMs: [5, 5] })], 0.5);

  it('plots each run: TTFT and ITL of completed requests, throughput when chunks arrived, hit rate', () => {
    const page = benchReportPage([
      { label: 'A: a.json', report: a },
      { label: 'B: b.json', report: b },
    ]);
    expect(page.charts.map((c) => c.title)).toEqual([
      'TTFT distribution',
      'ITL distribution',
      'Output throughput over time',
      'Prefix cache hit rate',
    ]);
    const [ttft, itl, throughput, hit] = page.charts;
    expect(ttft!.series.map((s) => s.label)).toEqual(['A: a.json', 'B: b.json']);
    expect([ttft!.series[0]!.values[0], ttft!.series[0]!.values[200]]).toEqual([100, 300]);
    expect([itl!.series[0]!.values[0], itl!.series[0]!.values[200]]).toEqual([10, 40]);
    expect(itl!.series[1]!.values[100]).toBe(5);
    // A's six output tokens: 3 chunks of 1 token each per request, all within its first second.
    const width = throughput!.x.values[1]! - throughput!.x.values[0]!;
    const tokens = (vals: readonly (number | null)[]): number => vals.reduce<number>((s, v) => s + (v ?? 0), 0) * width;
    expect(tokens(throughput!.series[0]!.values)).toBeCloseTo(6, 6);
    expect(tokens(throughput!.series[1]!.values)).toBeCloseTo(3, 6);
    // B ran half as long: its line ends there rather than dropping to zero.
    expect(throughput!.series[1]!.values.at(-1)).toBeNull();
    expect(throughput!.series[0]!.values.at(-1)).not.toBeNull();
    expect(hit!.kind).toBe('bars');
    expect(hit!.x.categories).toEqual(['A: a.json', 'B: b.json']);
    expect(hit!.series[0]!.values).toEqual([25, null]); // 5 cached of 20 prompt tokens; B did not report
    expect(page.tables[0]!.rows.map((r) => [r[0], r[1], r[2]])).toEqual([
      ['A: a.json', '2', '1'],
      ['B: b.json', '1', '0'],
    ]);
  });
});

describe('simulate report page', () => {
  const trace = parseTrace(
    [0, 200, 400, 600, 800, 1000]
      .map((t, i) => JSON.stringify({ timestamp: t, input_length: 1024, output_length: 4, hash_ids: i % 2 === 0 ? [1, 2] : [1, 3] }))
      .join('\n'),
  );
  const run = (policy: 'kv-aware' | 'round-robin') => ({
    name: policy,
    report: simulate({ trace, decodeWorkers: 2, policy, recordRequests: true }),
  });

  it('plots every policy, with hit rates split into own cache and fetched', () => {
    const runs = [run('round-robin'), run('kv-aware')];
    const page = simReportPage('t.jsonl', runs);
    const hit = page.charts.find((c) => c.kind === 'bars')!;
    expect(hit.x.categories).toEqual(['round-robin', 'kv-aware']);
    expect(hit.series.map((s) => s.label)).toEqual(['own cache', 'fetched']);
    expect(hit.series[0]!.values).toEqual(runs.map((r) => Math.round(r.report.prefix.localHitRate * 10000) / 100));
    const ttft = page.charts[0]!;
    expect(ttft.series[1]!.values[200]).toBeCloseTo(runs[1]!.report.latencyMs.ttft.max!, 3);
    // Every output token lands in the throughput chart.
    const tp = page.charts.find((c) => c.title === 'Output throughput over time')!;
    const width = tp.x.values[1]! - tp.x.values[0]!;
    const total = tp.series[0]!.values.reduce<number>((s, v) => s + (v ?? 0), 0) * width;
    expect(total).toBeCloseTo(6 * 4, 1);
  });

  it('needs per-request records', () => {
    expect(() => simReportPage('t', [{ name: 'x', report: simulate({ trace, decodeWorkers: 1 }) }])).toThrow(/recordRequests/);
  });
});

describe('the page', () => {
  it('embeds its data so that no label can close the script element', () => {
    const evil = '</script><script>alert(1)</script><!--\u2028';
    expect(jsonForScript({ label: evil })).not.toMatch(/<|\u2028/);
    expect(JSON.parse(jsonForScript({ label: evil }))).toEqual({ label: evil });
    const html = renderReportPage(benchReportPage([{ label: evil, report: benchReport([request(0, {})], 1) }]));
    expect(html.split('<script').length - 1).toBe(3); // data, uPlot, the drawing script: nothing else
    expect(html).toContain("default-src 'none'");
    expect(html).toContain('uPlot');
  });
});
