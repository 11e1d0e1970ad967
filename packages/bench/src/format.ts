import type { BenchReport } from './report';
import type { Summary } from './stats';

/** One comparable number of a report. */
interface Metric {
  readonly label: string;
  readonly value: (r: BenchReport) => number | null;
  readonly digits: number;
}

const LATENCIES = [
  ['TTFT', 'ttft'],
  ['TPOT', 'tpot'],
  ['ITL', 'itl'],
  ['E2E', 'e2e'],
] as const;
const STATS = ['mean', 'p50', 'p90', 'p99'] as const satisfies readonly (keyof Summary)[];

const METRICS: readonly Metric[] = [
  { label: 'Completed requests', value: (r) => r.counts.completed, digits: 0 },
  { label: 'Failed requests', value: (r) => r.counts.failed, digits: 0 },
  { label: 'Duration (s)', value: (r) => r.durationSec, digits: 2 },
  { label: 'Request throughput (req/s)', value: (r) => r.throughput.requestsPerSec, digits: 2 },
  { label: 'Input throughput (tok/s)', value: (r) => r.throughput.inputTokensPerSec, digits: 1 },
  { label: 'Output throughput (tok/s)', value: (r) => r.throughput.outputTokensPerSec, digits: 1 },
  { label: 'Total throughput (tok/s)', value: (r) => r.throughput.totalTokensPerSec, digits: 1 },
  ...LATENCIES.flatMap(([name, key]) =>
    STATS.map((s): Metric => ({ label: `${name} ${s} (ms)`, value: (r) => r.latencyMs[key][s], digits: 2 })),
  ),
  { label: 'Goodput (req/s)', value: (r) => r.goodput?.requestsPerSec ?? null, digits: 2 },
  { label: 'Goodput fraction', value: (r) => r.goodput?.fraction ?? null, digits: 3 },
  { label: 'Prefix cache hit rate', value: (r) => r.prefixCache.hitRate, digits: 3 },
];

function fmt(x: number | null, digits: number): string {
  return x === null ? '—' : x.toFixed(digits);
}

/** One line: what was run against what (workload, server, endpoint, model, arrivals). */
export function describeRun(r: BenchReport): string {
  const o = r.options;
  const workload = typeof o.workload === 'object' ? `trace ${o.workload.trace}` : o.workload;
  const arrivals =
    o.rate === null
      ? typeof o.workload === 'object'
        ? 'trace arrivals'
        : 'all at once'
      : o.rate === 'inf'
        ? 'rate inf'
        : `rate ${o.rate}/s`;
  const conc = o.concurrency === null ? '' : `, concurrency ${o.concurrency}`;
  return `${workload} → ${o.url} (${o.endpoint}, model ${o.model}), ${arrivals}${conc}`;
}

/** A human-readable table of one report (like `vllm bench serve`). */
export function formatReport(r: BenchReport): string {
  const width = 44;
  const rule = '='.repeat(width + 14);
  const lines = [rule, ` pdserve bench: ${describeRun(r)}`, rule];
  const row = (label: string, value: string): string => `${label.padEnd(width)}${value.padStart(14)}`;
  for (const m of METRICS.slice(0, 7)) lines.push(row(m.label, fmt(m.value(r), m.digits)));
  lines.push(row('Input tokens', String(r.tokens.input)), row('Output tokens', String(r.tokens.output)));
  for (const [status, n] of Object.entries(r.counts.failedByStatus)) lines.push(row(`  failed with ${status}`, String(n)));
  lines.push('-'.repeat(width + 14), `${'Latency (ms)'.padEnd(width - 30)}${STATS.map((s) => s.padStart(11)).join('')}`);
  for (const [name, key] of LATENCIES) {
    const s = r.latencyMs[key];
    lines.push(`${`${name} (n=${s.count})`.padEnd(width - 30)}${STATS.map((k) => fmt(s[k], 2).padStart(11)).join('')}`);
  }
  lines.push('-'.repeat(width + 14));
  if (r.goodput !== null) {
    const g = r.goodput;
    const slo = [g.sloTtftMs === null ? '' : `TTFT ≤ ${g.sloTtftMs} ms`, g.sloTpotMs === null ? '' : `TPOT ≤ ${g.sloTpotMs} ms`]
      .filter((x) => x)
      .join(', ');
    lines.push(
      row(`Goodput, ${slo} (req/s)`, fmt(g.requestsPerSec, 2)),
      row('Requests meeting the SLO', `${g.met} (${(g.fraction * 100).toFixed(1)}%)`),
    );
  }
  const pc = r.prefixCache;
  lines.push(row('Prefix cache hit rate', pc.hitRate === null ? 'not reported' : `${(pc.hitRate * 100).toFixed(1)}%`));
  if (r.aborted) lines.push('(aborted: partial results)');
  lines.push(rule);
  return lines.join('\n');
}

/** Two reports side by side with the ratio b / a per metric. */
export function compareReports(a: BenchReport, b: BenchReport): string {
  const w = 30;
  const col = 14;
  const lines = [
    `A: ${describeRun(a)}`,
    `B: ${describeRun(b)}`,
    `${'metric'.padEnd(w)}${'A'.padStart(col)}${'B'.padStart(col)}${'B/A'.padStart(col - 4)}`,
  ];
  lines.push('-'.repeat(w + 3 * col - 4));
  for (const m of METRICS) {
    const x = m.value(a);
    const y = m.value(b);
    const ratio = x !== null && y !== null && x !== 0 ? (y / x).toFixed(2) + '×' : '—';
    lines.push(`${m.label.padEnd(w)}${fmt(x, m.digits).padStart(col)}${fmt(y, m.digits).padStart(col)}${ratio.padStart(col - 4)}`);
  }
  return lines.join('\n');
}
